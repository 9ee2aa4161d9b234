"""``data.format: folder``: your own videos, one folder per class, with no annotation file to write.

Two layouts under ``data.root`` (see docs/data.md):

- ``<class>/<video file or frame folder>``: the validation set is drawn from it by a stratified,
  seeded split (``data.val_fraction``, ``data.split_seed``). ``freeze_split`` writes that split to
  the run folder so that a resumed run and ``sevnet eval`` use the very same one (``data.split_file``).
- ``train/<class>/...``, ``val/<class>/...`` (and ``test/<class>/...``): the split is the folders.

Class names are the folder names, sorted (spaces and non-ASCII allowed; normalised to NFC so a
dataset copied from macOS gives the same names). Anything else under the root (hidden files, files
that are not videos, empty folders) is ignored and counted, and reported once.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..display import printable
from ..errors import ConfigError, NotFoundError
from .annotations import (
    Annotation,
    AnnotationError,
    Sample,
    _check_unique,
    _split_key,
    inside_root,
    read_text,
    resolve_data_file,
)
from .config import DataConfig
from .frames import list_frame_images, natural_key
from .registry import register_format
from .video import read_sorted_frames as read_sorted_frames  # decoded there; importable here too

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv"}
)
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
SPLIT_FILE_NAME = "split.csv"
_reported: set[tuple[object, ...]] = set()  # stray-file and single-video reports already logged


def is_video_file(path: str | Path) -> bool:
    """A video by its extension (case-insensitive); the decoder decides later whether it really is one."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


# --- walking the tree --------------------------------------------------------------------------
@dataclass
class Item:
    """One sample found on disk: a video file or a frame folder."""

    rel: str  # POSIX path relative to data.root
    cls: str
    num_frames: int | None = None  # image count of a frame folder; None for a video file


@dataclass
class Scan:
    items: list[Item] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # stray files and folders, relative to root
    visited: set[tuple[int, int]] = field(default_factory=set)  # (device, inode) of folders walked: no loops


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: natural_key(e.name))


def _utf8(name: str) -> bool:
    """False for a file name holding bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_dir(entry: os.DirEntry) -> bool | None:
    """``entry.is_dir()``; None for a symlink that cannot be followed (a loop: ``ln -s x x``)."""
    try:
        return entry.is_dir()
    except OSError:
        return None


def _first_visit(path: Path, scan: Scan) -> bool:
    """True the first time a folder (by device and inode, through any symlink) is walked in a class,
    unless it is the folder being walked or one above it: a symlink back to an ancestor (``up -> ..``)
    would otherwise recurse until the OS refuses (ELOOP, ~40 levels) and pull other classes in."""
    real = os.path.realpath(path)
    here = os.path.realpath(path.parent)
    if here == real or here.startswith(real.rstrip(os.sep) + os.sep):
        return False
    st = path.stat()
    key = (st.st_dev, st.st_ino)
    if key in scan.visited:
        return False
    scan.visited.add(key)
    return True


def _walk(folder: Path, root: Path, cls: str, scan: Scan) -> None:
    """Collect the videos and frame folders under a class folder, at any depth; a symlink to a folder
    above (a loop) or to one already walked in this class is listed as ignored, never followed."""
    for entry in _entries(folder):
        path = Path(entry.path)
        is_dir = _is_dir(entry)
        if entry.name.startswith("."):
            scan.ignored.append(_rel(path, root))
        elif not _utf8(entry.name):  # split.csv and reports are UTF-8 text: such a name cannot be recorded
            scan.ignored.append(printable(_rel(path, root)) + " (its name is not valid UTF-8: rename it)")
        elif is_dir is None or (is_dir and not _first_visit(path, scan)):
            scan.ignored.append(_rel(path, root) + " (a symlink loop, or a folder already walked)")
        elif is_dir:
            _visit_dir(path, root, cls, scan)
        elif entry.is_file() and is_video_file(path):
            scan.items.append(Item(_rel(path, root), cls))
        else:
            scan.ignored.append(_rel(path, root))


def _visit_dir(path: Path, root: Path, cls: str, scan: Scan) -> None:
    """A folder of images (and no videos) is one sample; any other folder is walked into."""
    entries = _entries(path)
    images = list_frame_images(path)
    has_videos = any(e.is_file() and is_video_file(e.name) and not e.name.startswith(".") for e in entries)
    if images and not has_videos:
        scan.items.append(Item(_rel(path, root), cls, len(images)))
        names = {p.name for p in images}
        scan.ignored += [_rel(Path(e.path), root) for e in entries if e.name not in names]
    elif not entries:
        scan.ignored.append(_rel(path, root) + "/")  # an empty folder
    else:
        _walk(path, root, cls, scan)


def scan_classes(base: Path, root: Path) -> tuple[list[str], Scan]:
    """Class folders directly under ``base`` and every sample under them. A class folder without a
    video is an error naming it: a class the model could never learn is a mistake, not noise."""
    scan, classes, seen = Scan(), [], {}
    for entry in _entries(base):
        path = Path(entry.path)
        if entry.name.startswith(".") or not entry.is_dir():
            scan.ignored.append(_rel(path, root))
            continue
        if not _utf8(entry.name):
            raise AnnotationError(f"{path}: class folder name is not valid UTF-8; rename the folder")
        cls = unicodedata.normalize("NFC", entry.name)
        if cls in seen:
            raise AnnotationError(f"{path}: same class name as {seen[cls]} (they differ only in Unicode normalisation)")
        seen[cls] = path
        before, ignored_before = len(scan.items), len(scan.ignored)
        scan.visited = {(path.stat().st_dev, path.stat().st_ino)}  # per class: each class is walked on its own
        _walk(path, root, cls, scan)
        if len(scan.items) == before:
            strays = scan.ignored[ignored_before:]
            found = f" (it holds {len(strays)} other files, e.g. {strays[0]})" if strays else " (it is empty)"
            raise AnnotationError(
                f"{path}: class folder {cls!r} has no videos or frame folders{found}; "
                f"add videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) or remove the folder"
            )
        classes.append(cls)
    return sorted(classes), scan


def _check_classes(classes: list[str], base: Path, scan: Scan) -> None:
    if len(classes) >= 2:
        return
    hint = ""
    if any(is_video_file(p) for p in scan.ignored):
        hint = "; videos directly in the root are not used: put each class's videos in a folder named after the class"
    raise AnnotationError(
        f"{base}: found {len(classes)} class folder(s) {classes}; the folder format needs at least 2 "
        f"(root/<class>/<video or frame folder>){hint}"
    )


# --- the split -----------------------------------------------------------------------------------
def split_folders(root: Path) -> dict[str, Path] | None:
    """``{split: folder}`` when the root uses split folders (it has ``train/``), else None."""
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        folder = next((root / n for n in names if (root / n).is_dir()), None)
        if folder is not None:
            found[split] = folder
    return found if "train" in found else None


def _rank(seed: int, rel: str) -> bytes:
    return hashlib.blake2b(f"{seed}\0{rel}".encode("utf-8", "surrogateescape"), digest_size=8).digest()


def val_count(n: int, fraction: float) -> int:
    """Validation samples of a class of ``n``: round(n * fraction), at least 1 and at most n - 1
    once a class has 2 samples (so every class is both trained on and validated)."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(round(n * fraction), 1), n - 1)


def stratified_split(items: list[Item], fraction: float, seed: int) -> dict[str, str]:
    """``{rel: "train" | "val"}``, per class. Files are ranked by a hash of (seed, path), not by a
    shuffle, so the split is the same on every machine and adding a video moves at most one other."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {fraction}")
    by_class: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_class[item.cls].append(item)
    out = {}
    for group in by_class.values():
        ranked = sorted(group, key=lambda it: _rank(seed, it.rel))
        k = val_count(len(group), fraction)
        out.update({it.rel: "val" if i < k else "train" for i, it in enumerate(ranked)})
    single = sorted(c for c, group in by_class.items() if len(group) == 1)
    if fraction > 0 and single and (key := ("single", tuple(single))) not in _reported:
        _reported.add(key)
        shown = ", ".join(single[:5]) + (" ..." if len(single) > 5 else "")
        log.warning("%d class(es) with a single video, trained on but never validated: %s; add videos, or give a "
                    "val/ folder", len(single), shown)  # fmt: skip
    return out


def _split_seed(cfg: DataConfig) -> int:
    return cfg.seed if cfg.split_seed is None else cfg.split_seed


def _report_ignored(root: Path, ignored: list[str]) -> None:
    key = (str(root.resolve()), len(ignored))
    if ignored and key not in _reported:
        _reported.add(key)
        shown = printable(", ".join(ignored[:3]))  # a log file is UTF-8: a non-UTF-8 name would break it
        log.warning("%s: ignored %d files that are not videos or frame folders (e.g. %s)", printable(root),
                    len(ignored), shown)  # fmt: skip


def folder_items(cfg: DataConfig) -> tuple[list[str], list[tuple[Item, str]], list[str]]:
    """Every sample of a folder dataset with its split, from the tree (no split file):
    (classes, [(item, split)], ignored)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise NotFoundError(f"data.root is not a folder: {root}")
    folders = split_folders(root)
    if folders is None:
        classes, scan = scan_classes(root, root)
        _check_classes(classes, root, scan)
        split = stratified_split(scan.items, cfg.val_fraction, _split_seed(cfg))
        return classes, [(it, split[it.rel]) for it in scan.items], scan.ignored
    classes, scan = scan_classes(folders["train"], root)
    _check_classes(classes, folders["train"], scan)
    ignored = [_rel(Path(e.path), root) for e in _entries(root) if Path(e.path) not in folders.values()]
    ignored += scan.ignored
    if "val" in folders:
        pairs = [(it, "train") for it in scan.items]
    else:  # train/ alone: validate on a stratified share of it
        split = stratified_split(scan.items, cfg.val_fraction, _split_seed(cfg))
        pairs = [(it, split[it.rel]) for it in scan.items]
    for name in ("val", "test"):
        if name in folders:
            extra, other = scan_classes(folders[name], root)
            unknown = sorted(set(extra) - set(classes))
            if unknown:
                raise AnnotationError(
                    f"{folders[name] / unknown[0]}: class {unknown[0]!r} has no folder in {folders['train']}"
                )
            pairs += [(it, name) for it in other.items]
            ignored += other.ignored
    return classes, pairs, ignored


# --- the split file ------------------------------------------------------------------------------
def read_split_file(path: Path) -> list[tuple[str, str, str]]:
    """Rows (rel path, class, split) of a CSV (header ``path,class,split``, more columns allowed, so
    ``data check``'s report reads too) or of a JSON list of ``{"path", "class", "split"}`` objects."""
    if path.suffix.lower() == ".json":
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(entries, list):
            raise AnnotationError(f"{path}: expected a list of {{'path', 'class', 'split'}} objects")
        raw = [(f"{path}: entry {n}", n, e) for n, e in enumerate(entries, 1)]
    else:
        with io.StringIO(read_text(path).removeprefix("\ufeff"), newline="") as f:  # not UTF-8: AnnotationError
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "class", "split"} <= set(reader.fieldnames):
                raise AnnotationError(f"{path}:1: header must name path, class and split, got {reader.fieldnames}")
            raw = [(f"{path}:{reader.line_num}", reader.line_num, row) for row in reader]
    rows, ids = [], {}
    for where, n, entry in raw:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) and entry[k] for k in ("path", "class", "split")
        ):
            raise AnnotationError(f"{where}: expected a path, a class and a split, got {entry}")
        try:
            split = _split_key(entry["split"].strip())
        except ValueError:
            raise AnnotationError(f"{where}: split {entry['split']!r} is not train, val or test") from None
        rel = entry["path"].strip()
        _check_unique(ids, rel, path, n)
        rows.append((rel, unicodedata.normalize("NFC", entry["class"].strip()), split))
    return rows


def write_split_file(path: Path, pairs: list[tuple[Item, str]]) -> Path:
    """Write ``path,class,split`` rows (train first), atomically: a crash never leaves half a split."""
    order = {"train": 0, "val": 1, "test": 2}
    rows = sorted(((it.rel, it.cls, s) for it, s in pairs), key=lambda r: (order[r[2]], r[1], natural_key(r[0])))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")  # csv's default is \r\n
        writer.writerow(["path", "class", "split"])
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def _from_split_file(cfg: DataConfig, split: str) -> Annotation:
    root = Path(cfg.root)
    path = resolve_data_file(root, cfg.split_file or "", "split_file")
    rows = read_split_file(path)
    classes = sorted({cls for _, cls, _ in rows})
    lookup = {name: i for i, name in enumerate(classes)}
    samples, missing = [], []
    for rel, cls, row_split in rows:
        if row_split != split:
            continue
        full = inside_root(cfg, root / rel, f"{path} (path {rel!r})")
        if full.is_dir():
            count = len(list_frame_images(full))
            samples.append(Sample(full, lookup[cls], frames=True, num_frames=count or None))
        elif full.is_file():
            samples.append(Sample(full, lookup[cls]))
        else:
            missing.append(str(full))
    return Annotation(samples, classes, missing=missing)


@register_format("folder")
def parse_folder(cfg: DataConfig, split: str) -> Annotation:
    """The ``split`` (train / val / test) of a folder dataset: from ``data.split_file`` when set,
    else from the split folders, else from the seeded stratified split of the class folders."""
    if cfg.split_file:
        return _from_split_file(cfg, split)
    root = Path(cfg.root)
    if split == "test" and (root.is_dir() and "test" not in (split_folders(root) or {})):
        raise NotFoundError(f"{root}: no test split: add {root / 'test'}/<class>/... or rows with split 'test' "
                                "to a data.split_file")  # fmt: skip
    classes, pairs, ignored = folder_items(cfg)
    _report_ignored(root, ignored)
    lookup = {name: i for i, name in enumerate(classes)}
    samples = [
        Sample(root / it.rel, lookup[it.cls], frames=it.num_frames is not None, num_frames=it.num_frames)
        for it, s in pairs
        if s == split
    ]
    return Annotation(samples, classes, ignored=ignored)


def freeze_split(cfg: DataConfig, out_dir: str | Path, reuse: bool = False) -> DataConfig:
    """Write the seeded split of a folder dataset to ``out_dir/split.csv`` and return the config with
    ``split_file`` pointing at it (absolute), so that the run's saved config (eval, a rerun) reads
    that split instead of recomputing it on a tree that may have changed since.

    A no-op (the config is returned as it is) for other formats, for split folders and when
    ``split_file`` is already set. ``reuse=True`` (a resumed run) keeps an existing split.csv.
    """
    if cfg.format != "folder" or cfg.split_file or split_folders(Path(cfg.root)) is not None:
        return cfg
    path = Path(out_dir).resolve() / SPLIT_FILE_NAME
    if not (reuse and path.is_file()):
        _, pairs, _ = folder_items(cfg)
        write_split_file(path, pairs)
    return dataclasses.replace(cfg, split_file=str(path))

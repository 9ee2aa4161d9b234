"""Parsers for each benchmark's annotation files, exactly as released (see docs/data.md).

Each parser returns an ``Annotation``: the samples (path + target) and the class names. Errors in
an annotation file stop with ``AnnotationError`` naming the file and the line (1-based) or, for
JSON lists, the entry number: a wrong label is never silently trained on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sevnet.errors import ConfigError, NotFoundError, SevnetError

from .config import DataConfig
from .registry import format_spec, register_format

log = logging.getLogger(__name__)


class AnnotationError(SevnetError, ValueError):
    """A malformed annotation: the message names the file and the line."""


@dataclass
class Sample:
    path: Path  # a video file, or a frame folder when ``frames`` is True
    target: int | list[int]  # class index; list of indices for multi-label; -1 when unlabelled
    frames: bool = False
    num_frames: int | None = None  # known from the list (frame_list), else probed


@dataclass
class Annotation:
    samples: list[Sample]
    classes: list[str]
    multi_label: bool = False
    missing: list[str] = field(default_factory=list)  # listed but absent on disk (reported, not fatal)
    ignored: list[str] = field(default_factory=list)  # format folder: stray files under root, not samples
    excluded: int = 0  # samples dropped because data.exclude_list names them


def _file(root: Path, name: str | None, default: str) -> Path:
    path = root / (name or default)
    if not path.is_file():
        raise NotFoundError(f"annotation file not found: {path}")
    return path


def read_text(path: Path) -> str:
    """A text file as UTF-8; any other encoding is an AnnotationError naming the file and the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise AnnotationError(
            f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None


def read_json(path: Path) -> Any:
    """A JSON file; invalid JSON is an AnnotationError naming the file and the line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def _lines(path: Path) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(read_text(path).splitlines(), 1) if line.strip()]


def _check_unique(ids: dict[str, int], key: str, path: Path, where: int) -> None:
    if key in ids:
        raise AnnotationError(f"{path}:{where}: duplicate id {key!r} (first at {ids[key]})")
    ids[key] = where


def _class_index(name: str, lookup: dict[str, int], path: Path, where: int) -> int:
    try:
        return lookup[name]
    except KeyError:
        raise AnnotationError(f"{path}:{where}: unknown class name {name!r}") from None


def resolve_data_file(root: Path, name: str, key: str) -> Path:
    """A file named by a config key (``split_file``, ``exclude_list``): absolute, or relative to
    data.root, or else to the current folder (where ``sevnet data check`` writes by default)."""
    path = Path(name)
    for candidate in (path,) if path.is_absolute() else (root / path, path):
        if candidate.is_file():
            return candidate
    raise NotFoundError(f"data.{key} not found: {name} (looked in {root} and in {Path.cwd()})")


def inside_root(cfg: DataConfig, sample_path: Path, where: str) -> Path:
    """``sample_path`` if it lies inside ``data.root`` (or ``data.video_dir``), judged on the path as
    written (``..`` and absolute ids are caught; symlinks inside the dataset are the owner's choice), else
    an AnnotationError naming ``where`` (file:line). ``data.allow_outside_root: true`` turns the check off."""
    if cfg.allow_outside_root:
        return sample_path
    root = Path(cfg.root)
    full = os.path.normpath(os.path.abspath(sample_path))
    for base in [root] + ([root / cfg.video_dir] if cfg.video_dir else []):
        base_abs = os.path.normpath(os.path.abspath(base))
        if os.path.commonpath([full, base_abs]) == base_abs:
            return sample_path
    raise AnnotationError(
        f"{where}: sample path {full} is outside data.root ({os.path.abspath(root)}); ids in an annotation file "
        "must name files under the dataset folder (set data.allow_outside_root: true to allow it)"
    )


def _label_index(token: str, num_classes: int, path: Path, where: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise AnnotationError(f"{path}:{where}: label {token!r} is not an integer") from None
    if not 0 <= value < num_classes:
        raise AnnotationError(f"{path}:{where}: label {value} out of range [0, {num_classes})")
    return value


def _split_key(split: str) -> str:
    if split in ("train", "training"):
        return "train"
    if split in ("val", "validation", "validate", "valid"):
        return "val"
    if split == "test":
        return "test"
    raise ConfigError(f"unknown split {split!r}: use train, val or test")


def _list_name(cfg: DataConfig, split: str) -> str | None:
    return {"train": cfg.train_list, "val": cfg.val_list, "test": cfg.test_list}[split]


# --- Something-Something V2: JSON labels + JSON lists + webm -------------------------------------
@register_format("ssv2")
def parse_ssv2(cfg: DataConfig, split: str) -> Annotation:
    root = Path(cfg.root)
    labels_path = _file(root, cfg.labels_file, "something-something-v2-labels.json")
    labels = read_json(labels_path)
    if not isinstance(labels, dict) or not all(re.fullmatch(r"\d+", str(i)) for i in labels.values()):
        raise AnnotationError(f"{labels_path}: expected an object mapping class names to indices")
    lookup = {name: int(idx) for name, idx in labels.items()}
    classes = [name for name, _ in sorted(lookup.items(), key=lambda kv: kv[1])]
    if sorted(lookup.values()) != list(range(len(lookup))):
        raise AnnotationError(f"{labels_path}: class indices are not 0..{len(lookup) - 1}")
    default = {"train": "train", "val": "validation", "test": "test"}[split]
    path = _file(root, _list_name(cfg, split), f"something-something-v2-{default}.json")
    entries = read_json(path)
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{'id', 'template'}} objects")
    video_dir = root / (cfg.video_dir or "20bn-something-something-v2")
    samples, ids = [], {}
    for n, entry in enumerate(entries, 1):
        where = f"entry {n}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(f"{path}: {where}: expected an object with an 'id'")
        if isinstance(entry["id"], bool) or not isinstance(entry["id"], str | int) or str(entry["id"]) == "":
            raise AnnotationError(f"{path}: {where}: 'id' must be a string or an integer, got {entry['id']!r}")
        vid = str(entry["id"])
        _check_unique(ids, vid, path, n)
        if split == "test":
            target = -1
        elif not isinstance(entry.get("template"), str):
            got = entry.get("template")
            raise AnnotationError(f"{path}: {where} (id {vid}): 'template' must be a string, got {got!r}")
        else:
            name = entry["template"].replace("[", "").replace("]", "")
            if name not in lookup:
                raise AnnotationError(f"{path}: {where} (id {vid}): unknown class name {name!r}")
            target = lookup[name]
        samples.append(Sample(inside_root(cfg, video_dir / f"{vid}.webm", f"{path}: {where}"), target))
    return Annotation(samples, classes)


# --- Something-Something V1: CSV + JPEG frame folders --------------------------------------------
@register_format("ssv1")
def parse_ssv1(cfg: DataConfig, split: str) -> Annotation:
    root = Path(cfg.root)
    labels_path = _file(root, cfg.labels_file, "something-something-v1-labels.csv")
    classes = [line for _, line in _lines(labels_path)]
    lookup = {name: i for i, name in enumerate(classes)}
    default = {"train": "train", "val": "validation", "test": "test"}[split]
    path = _file(root, _list_name(cfg, split), f"something-something-v1-{default}.csv")
    frame_dir = root / (cfg.video_dir or "20bn-something-something-v1")
    samples, ids = [], {}
    for n, line in _lines(path):
        parts = line.split(";")
        if split == "test" and len(parts) == 1:
            vid, target = parts[0], -1
        elif len(parts) == 2:
            vid, target = parts[0], _class_index(parts[1], lookup, path, n)
        else:
            raise AnnotationError(f"{path}:{n}: expected '<id>;<class name>', got {line!r}")
        _check_unique(ids, vid, path, n)
        samples.append(Sample(inside_root(cfg, frame_dir / vid, f"{path}:{n}"), target, frames=True))
    return Annotation(samples, classes)


# --- Kinetics-400: CSV with header; per-class or flat folders; some clips always missing ---------
_K400_DIRS = {"train": ("train",), "val": ("val", "validate", "validation", "valid"), "test": ("test",)}


@register_format("kinetics400")
def parse_kinetics(cfg: DataConfig, split: str) -> Annotation:
    root = Path(cfg.root)
    default = {"train": "train.csv", "val": "validate.csv", "test": "test.csv"}[split]
    path = _file(root, _list_name(cfg, split), default)
    rows = _read_kinetics_csv(path)
    if cfg.labels_file:
        classes = [line for _, line in _lines(_file(root, cfg.labels_file, ""))]
    else:  # the class list is the sorted set of the training labels, as in every K400 toolkit
        train_path = root / (cfg.train_list or "train.csv")
        source = rows if path == train_path or not train_path.is_file() else _read_kinetics_csv(train_path)
        classes = sorted({r[1] for r in source if r[1]})
    lookup = {name: i for i, name in enumerate(classes)}
    base = None
    if cfg.video_dir:
        base = root / cfg.video_dir
    else:
        base = next((root / d for d in _K400_DIRS[split] if (root / d).is_dir()), root / _K400_DIRS[split][0])
    samples, missing, ids = [], [], {}
    for n, label, ytid, t0, t1 in rows:
        name = f"{ytid}_{t0:06d}_{t1:06d}.mp4"
        _check_unique(ids, name, path, n)
        target = _class_index(label, lookup, path, n) if label else -1
        candidates = [base / label / name, base / name] if label else [base / name]
        candidates = [inside_root(cfg, c, f"{path}:{n}") for c in candidates]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(str(candidates[-1]))
            continue
        samples.append(Sample(found, target))
    return Annotation(samples, classes, missing=missing)


def _read_kinetics_csv(path: Path) -> list[tuple[int, str, str, int, int]]:
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        need = {"youtube_id", "time_start", "time_end"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise AnnotationError(f"{path}:1: header must name {sorted(need)} (and 'label'), got {reader.fieldnames}")
        out = []
        for row in reader:
            n = reader.line_num
            try:
                t0, t1 = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise AnnotationError(f"{path}:{n}: bad time_start/time_end in {row}") from None
            if not row["youtube_id"]:
                raise AnnotationError(f"{path}:{n}: empty youtube_id")
            out.append((n, (row.get("label") or "").strip(), row["youtube_id"], t0, t1))
    return out


# --- Moments in Time and Multi-Moments in Time ---------------------------------------------------
def _mit_categories(path: Path) -> list[str]:
    pairs = []
    for n, line in _lines(path):
        name, sep, idx = line.rpartition(",")
        if not sep:
            raise AnnotationError(f"{path}:{n}: expected '<category>,<index>', got {line!r}")
        pairs.append((int(idx), name))
    classes = [name for _, name in sorted(pairs)]
    if [i for i, _ in sorted(pairs)] != list(range(len(pairs))):
        raise AnnotationError(f"{path}: category indices are not 0..{len(pairs) - 1}")
    return classes


@register_format("mit")
def parse_mit(cfg: DataConfig, split: str, multi_label: bool = False) -> Annotation:
    root = Path(cfg.root)
    classes = _mit_categories(_file(root, cfg.labels_file, "moments_categories.txt"))
    lookup = {name: i for i, name in enumerate(classes)}
    default = {"train": "trainingSet.csv", "val": "validationSet.csv", "test": "testingSet.csv"}[split]
    path = _file(root, _list_name(cfg, split), default)
    folder = {"train": "training", "val": "validation", "test": "testing"}[split]
    video_dir = root / (cfg.video_dir or folder)
    samples, ids = [], {}
    for n, line in _lines(path):
        parts = [p.strip() for p in line.split(",")]
        rel = parts[0]
        _check_unique(ids, rel, path, n)
        if multi_label:
            if len(parts) < 2:
                raise AnnotationError(f"{path}:{n}: expected '<path>,<label>[,<label>...]', got {line!r}")
            target: int | list[int] = sorted({_mmit_label(t, lookup, classes, path, n) for t in parts[1:]})
        elif len(parts) in (2, 4):
            target = _class_index(parts[1], lookup, path, n)
        elif len(parts) == 1 and split == "test":
            target = -1
        else:
            raise AnnotationError(f"{path}:{n}: expected '<path>,<category>,<agree>,<disagree>', got {line!r}")
        samples.append(Sample(inside_root(cfg, video_dir / rel, f"{path}:{n}"), target))
    return Annotation(samples, classes, multi_label=multi_label)


def _mmit_label(token: str, lookup: dict[str, int], classes: list[str], path: Path, n: int) -> int:
    """M-MiT releases write labels as names or as indices: accept both."""
    if token in lookup:
        return lookup[token]
    if re.fullmatch(r"\d+", token):
        return _label_index(token, len(classes), path, n)
    raise AnnotationError(f"{path}:{n}: unknown class name {token!r}")


# --- FineGym: element lists, one sub-action clip per line ----------------------------------------
_GYM_LINE = re.compile(r"^(\S+_E_\d+_\d+_A_\d+_\d+)\s+(\S+)$")


def parse_gym(cfg: DataConfig, split: str, num_classes: int) -> Annotation:
    root = Path(cfg.root)
    prefix = f"gym{num_classes}"
    default = {"train": f"{prefix}_train_element_v1.1.txt", "val": f"{prefix}_val_element.txt"}.get(split)
    if default is None:
        raise ConfigError("FineGym has no test split list; use train or val")
    path = _file(root, _list_name(cfg, split), default)
    classes = _gym_classes(root / (cfg.labels_file or f"{prefix}_categories.txt"), num_classes)
    video_dir = root / (cfg.video_dir or "subactions")
    samples, ids = [], {}
    for n, line in _lines(path):
        m = _GYM_LINE.match(line)
        if not m:
            raise AnnotationError(f"{path}:{n}: expected '<ytid>_E_..._A_... <label>', got {line!r}")
        _check_unique(ids, m.group(1), path, n)
        video = inside_root(cfg, video_dir / f"{m.group(1)}.mp4", f"{path}:{n}")
        samples.append(Sample(video, _label_index(m.group(2), num_classes, path, n)))
    return Annotation(samples, classes)


def _gym_classes(path: Path, num_classes: int) -> list[str]:
    """Names from ``gymNN_categories.txt`` ("Clabel: 0; set: 1; Glabel: 1; (VT) round-off ...") when
    present; else ``class_<i>``."""
    if not path.is_file():
        return [f"class_{i}" for i in range(num_classes)]
    names = {}
    for n, line in _lines(path):
        m = re.match(r"Clabel:\s*(\d+);.*?;\s*Glabel:\s*\d+;\s*(.*)$", line)
        if not m:
            raise AnnotationError(f"{path}:{n}: expected 'Clabel: <i>; ...; Glabel: <j>; <name>'")
        names[int(m.group(1))] = m.group(2).strip()
    return [names.get(i, f"class_{i}") for i in range(num_classes)]


# --- The generic lists (MMAction2 style) ----------------------------------------------------------
def _generic_classes(cfg: DataConfig, root: Path, path: Path) -> tuple[list[str], dict[str, int], Path | None]:
    if cfg.labels_file:
        labels_path = _file(root, cfg.labels_file, "")
        classes = [line for _, line in _lines(labels_path)]
        return classes, {name: i for i, name in enumerate(classes)}, labels_path
    if cfg.num_classes:
        return [f"class_{i}" for i in range(cfg.num_classes)], {}, None
    raise ConfigError(
        f"{cfg.format}: {path.name} needs a class list: write the class names one per line (line i = class i) "
        "and set data.labels_file; the labels in the list may then be class names or 0-based indices. "
        "(With integer labels only, data.num_classes also works.)"
    )


def _split_line(line: str, need: int, lookup: dict[str, int], multi_label: bool) -> tuple[list[str], list[str]]:
    """The fields before the label(s), and the label(s). A single label is the last field, so paths
    may contain spaces; with a labels file it may be a class name with spaces: the longest class name
    that ends the line is the label. Multi-label lines split on every space."""
    if lookup and not multi_label:
        for m in re.finditer(r"\s+", line):
            if line[m.end() :] in lookup:
                head = line[: m.start()]
                fields = [head] if need == 2 else head.rsplit(None, 1)
                if len(fields) == need - 1:
                    return fields, [line[m.end() :]]
    if multi_label:
        parts = line.split()
        return parts[: need - 1], parts[need - 1 :]
    fields = line.rsplit(None, need - 1)
    return fields[:-1], fields[-1:]


def _generic_label(token: str, classes: list[str], lookup: dict[str, int], labels: Path | None, path: Path,
                   n: int) -> int:  # fmt: skip
    """A class name from the labels file, or a 0-based index; the error says which fix applies."""
    if token in lookup:
        return lookup[token]
    if re.fullmatch(r"[+-]?\d+", token):
        return _label_index(token, len(classes), path, n)
    if labels is not None:
        raise AnnotationError(
            f"{path}:{n}: unknown class name {token!r}: not in {labels} and not a 0-based index "
            "(the label is the longest class name that ends the line, else the last word)"
        )
    raise AnnotationError(
        f"{path}:{n}: label {token!r} is not an integer; to use class names as labels, write them one per line "
        "in a file and set data.labels_file (data.num_classes works with integer labels only)"
    )


def _frame_count(token: str, path: Path, n: int) -> int:
    if not re.fullmatch(r"\d+", token) or int(token) == 0:
        raise AnnotationError(
            f"{path}:{n}: frame count {token!r} must be an integer > 0 ('<folder> <num frames> <label>')"
        )
    return int(token)


def parse_generic(cfg: DataConfig, split: str, frames: bool) -> Annotation:
    root = Path(cfg.root)
    default = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}[split]
    path = _file(root, _list_name(cfg, split), default)
    classes, lookup, labels_path = _generic_classes(cfg, root, path)
    video_dir = root / (cfg.video_dir or "")
    need = 3 if frames else 2
    samples, ids = [], {}
    for n, line in _lines(path):
        fields, labels = _split_line(line, need, lookup, cfg.multi_label)
        if len(fields) < need - 1 or not labels or (len(labels) > 1 and not cfg.multi_label):
            form = "<folder> <num frames> <label>" if frames else "<path> <label>"
            more = " [<label> ...]" if cfg.multi_label else ""
            raise AnnotationError(f"{path}:{n}: expected '{form}{more}', got {line!r}")
        _check_unique(ids, fields[0], path, n)
        targets = [_generic_label(t, classes, lookup, labels_path, path, n) for t in labels]
        target: int | list[int] = sorted(set(targets)) if cfg.multi_label else targets[0]
        num = _frame_count(fields[1], path, n) if frames else None
        sample_path = inside_root(cfg, video_dir / fields[0], f"{path}:{n}")
        samples.append(Sample(sample_path, target, frames=frames, num_frames=num))
    return Annotation(samples, classes, multi_label=cfg.multi_label)


# --- data.exclude_list: samples known to be bad (``sevnet data check`` writes the list) ---------------
def _norm(rel: str) -> str:
    return posixpath.normpath(rel.strip().replace("\\", "/"))


def read_exclude_list(path: Path, root: Path) -> set[str]:
    """Paths relative to root, one per line (blank lines and ``#`` comments skipped; absolute paths
    are made relative to root)."""
    out = set()
    for _, line in _lines(path):
        if line.startswith("#"):
            continue
        out.add(_norm(os.path.relpath(line, root) if os.path.isabs(line) else line))
    return out


def apply_exclude_list(annotation: Annotation, cfg: DataConfig, split: str) -> Annotation:
    """Drop the samples ``data.exclude_list`` names, and say how many: a bad file found once by
    ``sevnet data check`` is then never read again, in training or evaluation."""
    root = Path(cfg.root)
    path = resolve_data_file(root, cfg.exclude_list or "", "exclude_list")
    names = read_exclude_list(path, root)
    kept = [s for s in annotation.samples if _norm(Path(os.path.relpath(s.path, root)).as_posix()) not in names]
    annotation.excluded = len(annotation.samples) - len(kept)
    annotation.samples = kept
    log.warning("%s: excluded %d of %d samples (data.exclude_list %s)", split, annotation.excluded,
                len(kept) + annotation.excluded, path)  # fmt: skip
    return annotation


@register_format("mmit")
def parse_mmit(cfg: DataConfig, split: str) -> Annotation:
    return parse_mit(cfg, split, multi_label=True)


@register_format("gym99")
def parse_gym99(cfg: DataConfig, split: str) -> Annotation:
    return parse_gym(cfg, split, num_classes=99)


@register_format("gym288")
def parse_gym288(cfg: DataConfig, split: str) -> Annotation:
    return parse_gym(cfg, split, num_classes=288)


@register_format("video_list")
def parse_video_list(cfg: DataConfig, split: str) -> Annotation:
    return parse_generic(cfg, split, frames=False)


@register_format("frame_list")
def parse_frame_list(cfg: DataConfig, split: str) -> Annotation:
    return parse_generic(cfg, split, frames=True)


def parse_annotation(cfg: DataConfig, split: str) -> Annotation:
    """The samples of ``split`` (train, val or test) by the parser registered for ``cfg.format``.
    Samples named by ``data.exclude_list`` are dropped (and counted) whatever the format."""
    split = _split_key(split)
    if cfg.split_file and cfg.format != "folder":
        raise ConfigError(f"data.split_file is read by format 'folder' only (format is '{cfg.format}')")
    spec = format_spec(cfg.format)
    if spec.parse is None:
        raise ConfigError(f"data.format '{cfg.format}' has no annotation files (it builds its dataset itself)")
    annotation = spec.parse(cfg, split)
    if cfg.exclude_list:
        annotation = apply_exclude_list(annotation, cfg, split)
    return annotation

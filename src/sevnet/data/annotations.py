"""Parsers for each benchmark's annotation files, exactly as released (see docs/data.md).

Each parser returns an ``Annotation``: the samples (path + target) and the class names. Errors in
an annotation file stop with ``AnnotationError`` naming the file and the line (1-based) or, for
JSON lists, the entry number: a wrong label is never silently trained on.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import DataConfig


class AnnotationError(ValueError):
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


def _file(root: Path, name: str | None, default: str) -> Path:
    path = root / (name or default)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    return path


def _lines(path: Path) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if line.strip()]  # fmt: skip


def _check_unique(ids: dict[str, int], key: str, path: Path, where: int) -> None:
    if key in ids:
        raise AnnotationError(f"{path}:{where}: duplicate id {key!r} (first at {ids[key]})")
    ids[key] = where


def _class_index(name: str, lookup: dict[str, int], path: Path, where: int) -> int:
    try:
        return lookup[name]
    except KeyError:
        raise AnnotationError(f"{path}:{where}: unknown class name {name!r}") from None


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
    raise ValueError(f"unknown split {split!r}: use train, val or test")


def _list_name(cfg: DataConfig, split: str) -> str | None:
    return {"train": cfg.train_list, "val": cfg.val_list, "test": cfg.test_list}[split]


# --- Something-Something V2: JSON labels + JSON lists + webm -------------------------------------
def parse_ssv2(cfg: DataConfig, split: str) -> Annotation:
    root = Path(cfg.root)
    labels_path = _file(root, cfg.labels_file, "something-something-v2-labels.json")
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    lookup = {name: int(idx) for name, idx in labels.items()}
    classes = [name for name, _ in sorted(lookup.items(), key=lambda kv: kv[1])]
    if sorted(lookup.values()) != list(range(len(lookup))):
        raise AnnotationError(f"{labels_path}: class indices are not 0..{len(lookup) - 1}")
    default = {"train": "train", "val": "validation", "test": "test"}[split]
    path = _file(root, _list_name(cfg, split), f"something-something-v2-{default}.json")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    video_dir = root / (cfg.video_dir or "20bn-something-something-v2")
    samples, ids = [], {}
    for n, entry in enumerate(entries, 1):
        where = f"entry {n}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(f"{path}: {where}: expected an object with an 'id'")
        vid = str(entry["id"])
        _check_unique(ids, vid, path, n)
        if split == "test":
            target = -1
        elif "template" not in entry:
            raise AnnotationError(f"{path}: {where} (id {vid}): no 'template'")
        else:
            name = entry["template"].replace("[", "").replace("]", "")
            if name not in lookup:
                raise AnnotationError(f"{path}: {where} (id {vid}): unknown class name {name!r}")
            target = lookup[name]
        samples.append(Sample(video_dir / f"{vid}.webm", target))
    return Annotation(samples, classes)


# --- Something-Something V1: CSV + JPEG frame folders --------------------------------------------
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
        samples.append(Sample(frame_dir / vid, target, frames=True))
    return Annotation(samples, classes)


# --- Kinetics-400: CSV with header; per-class or flat folders; some clips always missing ---------
_K400_DIRS = {"train": ("train",), "val": ("val", "validate", "validation", "valid"), "test": ("test",)}


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
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(str(candidates[-1]))
            continue
        samples.append(Sample(found, target))
    return Annotation(samples, classes, missing=missing)


def _read_kinetics_csv(path: Path) -> list[tuple[int, str, str, int, int]]:
    with path.open(newline="", encoding="utf-8") as f:
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
        samples.append(Sample(video_dir / rel, target))
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
        raise ValueError("FineGym has no test split list; use train or val")
    path = _file(root, _list_name(cfg, split), default)
    classes = _gym_classes(root / (cfg.labels_file or f"{prefix}_categories.txt"), num_classes)
    video_dir = root / (cfg.video_dir or "subactions")
    samples, ids = [], {}
    for n, line in _lines(path):
        m = _GYM_LINE.match(line)
        if not m:
            raise AnnotationError(f"{path}:{n}: expected '<ytid>_E_..._A_... <label>', got {line!r}")
        _check_unique(ids, m.group(1), path, n)
        samples.append(Sample(video_dir / f"{m.group(1)}.mp4", _label_index(m.group(2), num_classes, path, n)))
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
def parse_generic(cfg: DataConfig, split: str, frames: bool) -> Annotation:
    root = Path(cfg.root)
    default = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}[split]
    path = _file(root, _list_name(cfg, split), default)
    if cfg.labels_file:
        classes = [line for _, line in _lines(_file(root, cfg.labels_file, ""))]
    elif cfg.num_classes:
        classes = [f"class_{i}" for i in range(cfg.num_classes)]
    else:
        raise ValueError(f"{cfg.format}: set data.labels_file (one class name per line) or data.num_classes")
    video_dir = root / (cfg.video_dir or "")
    need = 3 if frames else 2
    samples, ids = [], {}
    for n, line in _lines(path):
        parts = line.split()
        if len(parts) < need or (len(parts) > need and not cfg.multi_label):
            form = "<folder> <num frames> <label>" if frames else "<path> <label>"
            more = " [<label> ...]" if cfg.multi_label else ""
            raise AnnotationError(f"{path}:{n}: expected '{form}{more}', got {line!r}")
        _check_unique(ids, parts[0], path, n)
        labels = [_label_index(t, len(classes), path, n) for t in parts[need - 1 :]]
        target: int | list[int] = sorted(set(labels)) if cfg.multi_label else labels[0]
        num = None
        if frames:
            num = _label_index(parts[1], 10**9, path, n)
            if num == 0:
                raise AnnotationError(f"{path}:{n}: frame count must be > 0")
        samples.append(Sample(video_dir / parts[0], target, frames=frames, num_frames=num))
    return Annotation(samples, classes, multi_label=cfg.multi_label)


def parse_annotation(cfg: DataConfig, split: str) -> Annotation:
    """Dispatch on ``cfg.format``; ``split`` is train, val (validation) or test."""
    split = _split_key(split)
    match cfg.format:
        case "ssv2":
            return parse_ssv2(cfg, split)
        case "ssv1":
            return parse_ssv1(cfg, split)
        case "kinetics400":
            return parse_kinetics(cfg, split)
        case "mit":
            return parse_mit(cfg, split)
        case "mmit":
            return parse_mit(cfg, split, multi_label=True)
        case "gym99":
            return parse_gym(cfg, split, 99)
        case "gym288":
            return parse_gym(cfg, split, 288)
        case "video_list":
            return parse_generic(cfg, split, frames=False)
        case "frame_list":
            return parse_generic(cfg, split, frames=True)
    raise ValueError(f"no annotation parser for format {cfg.format!r}")

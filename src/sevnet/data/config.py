"""The ``data`` section of an experiment config: one flat dataclass, every key documented.

Every ``DataConfig``, however it is made (the YAML schema, ``DataConfig(...)``, ``dataclasses.replace``),
is validated and resolved in ``__post_init__``: the one place a data setting is checked. Enumerated
keys take their names (``data.sampling=dense``) and reject anything else naming the valid values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from sevnet.errors import ConfigError
from sevnet.validate import at_least, between, check_values, is_number

from .registry import format_names


class Sampling(StrEnum):
    """segment: TSN, one frame per equal segment (SSv1/v2, FineGym); dense: frame_stride apart (Kinetics, MiT)."""

    segment = "segment"
    dense = "dense"


class Flip(StrEnum):
    """Horizontal flip in training: off; on (every class keeps its label: Kinetics, UCF101); auto (on, with
    the label swapped where the class names say a direction, e.g. "... left" <-> "... right", and never
    for a named direction without its mirror class; off when classes have no names; sevnet.data.mirror)."""

    off = "off"
    on = "on"
    auto = "auto"


class Reverse(StrEnum):
    """Training clips played backwards: off; auto (p = 1/2, with the label of the class whose name is the
    clip's class reversed in time, e.g. "... up" <-> "... down", "opening" <-> "closing"; never for a class
    without such a partner; sevnet.data.reversal)."""

    off = "off"
    auto = "auto"


class CacheMode(StrEnum):
    """Decoded-frame cache: off, memory (RAM, rebuilt each run) or disk (reused while files and settings hold)."""

    off = "off"
    memory = "memory"
    disk = "disk"


_ENUMS: dict[str, type[StrEnum]] = {"sampling": Sampling, "cache": CacheMode, "flip": Flip, "vflip": Flip,
                                    "reverse": Reverse}  # fmt: skip


@dataclass
class DataConfig:
    format: str = "video_list"  # which on-disk layout ``root`` holds: a registered format (sevnet.data.registry)
    root: str = ""  # the dataset folder, as released (annotations + videos or frames)
    # Annotation files relative to root; None = the format's released file name (docs/data.md).
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None
    labels_file: str | None = None  # class names file, where the format has one
    video_dir: str | None = None  # folder of videos / frame folders, relative to root
    multi_label: bool = False  # video_list only: several labels per line
    num_classes: int | None = None  # video_list/frame_list without a labels file
    # format "folder" (root/<class>/<videos>, or root/{train,val[,test]}/<class>/...; sevnet.data.folder):
    val_fraction: float = 0.2  # share of each class drawn for validation when there are no split folders
    split_seed: int | None = None  # seed of that split; None = data.seed
    split_file: str | None = None  # CSV/JSON of (path, class, split) to use instead; the trainer writes one per run
    # A file of sample paths relative to root, one per line (``sevnet data check`` writes one): any format
    # drops these samples when it parses its annotations, and says how many it dropped.
    exclude_list: str | None = None
    num_frames: int = 8  # T of a clip
    sampling: Sampling = Sampling.segment  # segment (TSN: SSv1/v2, FineGym) or dense (Kinetics, MiT)
    frame_stride: int = 4  # dense sampling: frames between samples
    frame_template: str = "{:05d}.jpg"  # frame folders: file name of frame i (from 1)
    train_scale: list[int] = field(default_factory=lambda: [128, 160])  # short-side jitter range
    train_crop: int = 112
    eval_scale: int = 128  # short side before the eval crop(s)
    eval_crop: int = 112
    eval_clips: int = 1  # temporal views in evaluation
    eval_crops: int = 1  # 1 (centre) or 3 (three-crop) spatial views
    # Horizontal flip in training: off | on | auto (Flip above). Plain "on" is wrong for Something-Something
    # (left/right classes); "auto" swaps the labels of mirror-image classes by their names.
    flip: Flip = Flip.off
    # Vertical flip in training: off | on | auto, as flip, with "up" <-> "down" and clockwise swapped (left and
    # right stay). Off by default: upside down, a falling thing rises; for classes that move any which way.
    vflip: Flip = Flip.off
    # Time reversal in training: off | auto (Reverse above): a class's clips played backwards are trained as
    # its time-reversed partner class ("... up" <-> "... down"), found by the class names.
    reverse: Reverse = Reverse.off
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    num_workers: int = 2
    # Repeated augmentation (MAE-ST): each training video is decoded once and gives ``repeats`` clips, each
    # with its own temporal sampling, crop, scale and flip. A step still trains on train.batch_size clips:
    # the loader reads train.batch_size / repeats videos per step (batch_size must be a multiple), so the lr
    # scaling (by clips per step) holds. An epoch still reads each video once, so it has ``repeats`` times the
    # steps: divide train.epochs by ``repeats`` for the same compute. Evaluation is unaffected. "auto": 4 with
    # up to 10 training videos per class (few videos: each is seen many times anyway, and 4 augmented clips
    # of it per step pay), else 1 (more distinct videos per step pay: docs/training.md, "Few examples per class").
    repeats: int | str = 1
    # Niceness added to each loader worker (0-19; 0 = the main process's priority): on a CPU that trains on
    # every core, a higher value lets the training threads win the cores (benchmarks/cache_bench.py).
    worker_nice: int = 0
    max_skip_fraction: float = 0.05  # stop training when more than this share of the training videos fails to load
    # Sample paths from annotation files must lie inside root (or video_dir); true allows ids such as
    # ``../other/x`` or absolute paths (only for annotation files you wrote yourself).
    allow_outside_root: bool = False
    # Videos larger than this (width x height, from the header and every decoded frame) are not decoded:
    # skipped and counted in training, a named DecodeError in predict. 0 = no limit. Default: DCI 4K.
    max_pixels: int = 4096 * 2160
    seed: int = 0  # augmentation seed (per sample: seed, epoch, index)
    # Decoded-frame cache (sevnet.data.cache): "off", "memory" (RAM, rebuilt each run) or "disk" (reused while
    # the files and settings are unchanged). Frames are decoded once, short side max(train_scale, eval_scale).
    cache: CacheMode = CacheMode.off
    cache_dir: str = ""  # disk cache folder; empty: the trainer's <out_dir>/cache, else ~/.cache/sevnet/frames
    synthetic: dict[str, Any] = field(default_factory=dict)  # options of format "synthetic"

    def __post_init__(self) -> None:
        """Check every key and resolve the derived ones (idempotent: a resolved config stays as it is)."""
        self.format = _format_name(self.format)
        for key, kind in _ENUMS.items():
            setattr(self, key, _enum_value(key, kind, getattr(self, key)))
        if not 0 <= self.worker_nice <= 19:
            raise ConfigError(f"data.worker_nice must be 0-19, got {self.worker_nice}")
        if self.eval_crops not in (1, 3):
            raise ConfigError(f"data.eval_crops must be 1 or 3, got {self.eval_crops}")
        _check_sizes(self)
        if self.format == "folder":  # frame folders of any naming: frames in name order
            self.frame_template = "sorted"
        if self.format == "synthetic":  # clips are rendered at their final size: no resize, no crop
            size = int((self.synthetic or {}).get("size", 64))
            self.train_scale, self.train_crop, self.eval_scale, self.eval_crop = [size, size], size, size, size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (Enums as their names)."""
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}


def _check_sizes(cfg: DataConfig) -> None:
    """Zero or negative sizes, and a zero std, are config errors here, not decode errors later."""
    for key in ("num_frames", "train_crop", "eval_scale", "eval_crop", "eval_clips", "repeats"):
        value = getattr(cfg, key)
        if key == "repeats" and value == "auto":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            kind = "a positive int or auto" if key == "repeats" else "a positive int"
            raise ConfigError(f"data.{key} must be {kind}, got {value!r}")
    if len(cfg.train_scale) != 2 or min(cfg.train_scale) < 1:
        raise ConfigError(f"data.train_scale must be two positive sizes [min, max], got {cfg.train_scale!r}")
    for key in ("mean", "std"):
        if len(getattr(cfg, key)) != 3:
            raise ConfigError(f"data.{key} must have 3 values (R, G, B), got {getattr(cfg, key)!r}")
    if any(not (is_number(v) and v > 0) for v in cfg.std):  # also catches NaN
        raise ConfigError(f"data.std must be > 0 for every channel, got {cfg.std!r}")
    check_values("data", cfg, DATA_RULES)
    if cfg.split_seed is not None:
        check_values("data", cfg, {"split_seed": at_least(0, "an integer")})
    if cfg.train_scale[0] > cfg.train_scale[1]:
        raise ConfigError(f"data.train_scale must be [min, max] with min <= max, got {cfg.train_scale!r}")


# Numeric keys beyond the sizes above: NaN, inf and out-of-range values are refused by key (not met later
# as a NaN loss, every video rejected after caching, or a skip threshold that never stops a run).
DATA_RULES = {
    "mean": between(-1e3, 1e3),
    "frame_stride": at_least(1, "an integer"),
    "val_fraction": between(0, 1, high_open=True),
    "num_workers": at_least(0, "an integer"),
    "max_skip_fraction": between(0, 1),
    "max_pixels": at_least(0, "an integer", " (0 = no limit)"),
    "seed": at_least(0, "an integer"),  # NumPy's per-sample generators refuse a negative seed (every clip)
}


def _format_name(value: Any) -> str:
    """``data.format`` as a registered format's name (a ``DataFormat`` member is its name)."""
    name = str(value)
    if name not in format_names():
        raise ConfigError(f"data.format: invalid value {value!r}; valid values: {', '.join(format_names())}")
    return name


def _enum_value(key: str, kind: type[StrEnum], value: Any) -> StrEnum:
    """``value`` as a member of ``kind`` by name; YAML's bare ``off``/``on`` (booleans) read as the words."""
    if isinstance(value, bool) or str(value).lower() in ("false", "true"):
        value = "on" if str(value).lower() == "true" else "off"
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise ConfigError(f"data.{key}: invalid value {value!r}; valid values: {names}") from None


# The data keys a checkpoint records (``meta["data"]``): all that inference needs to preprocess a video
# exactly as evaluation did.
INFERENCE_KEYS = ("num_frames", "sampling", "frame_stride", "eval_scale", "eval_crop", "mean", "std", "frame_template")


def inference_config(data: dict[str, Any], **overrides: Any) -> DataConfig:
    """The evaluation preprocessing a checkpoint recorded (``meta["data"]``), as a DataConfig for any
    file (one spatial crop; ``overrides`` e.g. ``eval_clips``)."""
    recorded = {k: data[k] for k in INFERENCE_KEYS if k in data}
    return DataConfig(**{"format": "video_list", "eval_crops": 1, **recorded, **overrides})


def to_data_config(cfg: DataConfig | dict[str, Any]) -> DataConfig:
    """A DataConfig from a plain dict (e.g. a checkpoint's record), rejecting unknown keys by name;
    a DataConfig is returned as it is (it was validated when it was made)."""
    if isinstance(cfg, DataConfig):
        return cfg
    known = {f.name for f in fields(DataConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"unknown data config key(s) {unknown}; valid keys: {sorted(known)}")
    return DataConfig(**cfg)

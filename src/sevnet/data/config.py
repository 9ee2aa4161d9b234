"""The ``data`` section of an experiment config: one flat dataclass, every key documented."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sevnet.errors import ConfigError

FORMATS = (
    "ssv2", "ssv1", "kinetics400", "mit", "mmit", "gym99", "gym288", "video_list", "frame_list", "folder",
    "synthetic",
)  # fmt: skip


@dataclass
class DataConfig:
    format: str = "video_list"  # one of FORMATS: which on-disk layout ``root`` holds
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
    sampling: str = "segment"  # "segment" (TSN: SSv1/v2, FineGym) or "dense" (Kinetics, MiT)
    frame_stride: int = 4  # dense sampling: frames between samples
    frame_template: str = "{:05d}.jpg"  # frame folders: file name of frame i (from 1)
    train_scale: list[int] = field(default_factory=lambda: [128, 160])  # short-side jitter range
    train_crop: int = 112
    eval_scale: int = 128  # short side before the eval crop(s)
    eval_crop: int = 112
    eval_clips: int = 1  # temporal views in evaluation
    eval_crops: int = 1  # 1 (centre) or 3 (three-crop) spatial views
    flip: bool = False  # horizontal flip in training; off for Something-Something (left/right labels)
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    num_workers: int = 2
    max_skip_fraction: float = 0.05  # stop training when more than this share of samples fails
    # Sample paths from annotation files must lie inside root (or video_dir); true allows ids such as
    # ``../other/x`` or absolute paths (only for annotation files you wrote yourself).
    allow_outside_root: bool = False
    # Videos larger than this (width x height, from the header and every decoded frame) are not decoded:
    # skipped and counted in training, a named DecodeError in predict. 0 = no limit. Default: DCI 4K.
    max_pixels: int = 4096 * 2160
    seed: int = 0  # augmentation seed (per sample: seed, epoch, index)
    # Decoded-frame cache (sevnet.data.cache): "off", "memory" (RAM, rebuilt each run) or "disk" (reused while
    # the files and settings are unchanged). Frames are decoded once, short side max(train_scale, eval_scale).
    cache: str = "off"
    cache_dir: str = ""  # disk cache folder; empty: the trainer's <out_dir>/cache, else ~/.cache/sevnet/frames
    synthetic: dict[str, Any] = field(default_factory=dict)  # options of format "synthetic"


def to_data_config(cfg: Any) -> DataConfig:
    """Accept a DataConfig, a dict or an OmegaConf node; reject unknown keys by name, resolve derived keys."""
    if isinstance(cfg, DataConfig):
        cfg = asdict(cfg)  # validated and resolved like any other input, into a new object
    elif not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    known = DataConfig.__dataclass_fields__
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ConfigError(f"unknown data config key(s) {unknown}; valid keys: {sorted(known)}")
    out = DataConfig(**cfg)
    if out.format not in FORMATS:
        raise ConfigError(f"data.format must be one of {FORMATS}, got {out.format!r}")
    if out.sampling not in ("segment", "dense"):
        raise ConfigError(f"data.sampling must be 'segment' or 'dense', got {out.sampling!r}")
    if out.eval_crops not in (1, 3):
        raise ConfigError(f"data.eval_crops must be 1 or 3, got {out.eval_crops}")
    if str(out.cache).lower() in ("false", "none", "0", ""):  # YAML reads a bare `off` as false
        out.cache = "off"
    if out.cache not in ("off", "memory", "disk"):
        raise ConfigError(f"data.cache must be 'off', 'memory' or 'disk', got {out.cache!r}")
    if out.format == "folder":  # frame folders of any naming: frames in name order
        out.frame_template = "sorted"
    if out.format == "synthetic":  # clips are rendered at their final size: no resize, no crop
        size = int(out.synthetic.get("size", 64))
        out.train_scale, out.train_crop, out.eval_scale, out.eval_crop = [size, size], size, size, size
    return out

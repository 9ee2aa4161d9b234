"""Experiment configs: one flat YAML per experiment over a typed schema (OmegaConf).

Precedence: the schema's defaults < the YAML file < ``key=value`` overrides from the command
line. A key that is not in the schema is an error naming the key, so a typo never silently
falls back to a default; so is a value outside a key's choices (the Enums below), e.g.
``train.amp=fp32``, which a plain string field once took for float16.

``load_config`` returns an ``ExperimentConfig`` of plain dataclasses (Enums for enumerated keys);
code takes the section it needs (``TrainConfig``, ``DataConfig``, ...) and builds variants with
``dataclasses.replace``. ``to_yaml`` writes one back (a run's config.yaml), ``to_container`` as JSON.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from sevnet.data.config import DataConfig
from sevnet.device import check_device_spec
from sevnet.errors import ConfigError, NotFoundError
from sevnet.validate import above, at_least, between, check_values, is_number


class AmpMode(StrEnum):
    """Mixed precision: auto = bf16 on CUDA if supported, else fp16 (with a grad scaler); on a CPU, bf16
    where it has AMX (native bf16 convolutions), else off."""

    auto = "auto"
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


class ChannelsLast(StrEnum):
    """channels_last_3d memory format: auto = on CUDA, and on a CPU with 2+ threads (measured faster there)."""

    auto = "auto"
    on = "on"
    off = "off"


class BothWays(StrEnum):
    """auto: where data.reverse: auto finds time-reversal pairs, score each clip forwards and backwards
    (engine/both_ways.py); off: forwards only."""

    auto = "auto"
    off = "off"


class NanPolicy(StrEnum):
    """What a NaN/inf loss does: stop (naming the step) or skip the step and count it."""

    stop = "stop"
    skip = "skip"


class OptimName(StrEnum):
    sgd = "sgd"
    adamw = "adamw"


# What each numeric key must be (checked in __post_init__, so a config made any way is checked; NaN and
# inf are refused everywhere): a bad value is named here, before any data is read.
OPTIM_RULES = {
    "lr": above(0),
    "base_batch": at_least(1, "an integer"),
    "momentum": between(0, 1),
    "betas": between(0, 1, high_open=True),
    "weight_decay": at_least(0),
    "warmup_epochs": at_least(0),
    "warmup_factor": between(0, 1),
    "min_lr_factor": between(0, 1),
    "label_smoothing": between(0, 1, high_open=True),
    "mixup_alpha": at_least(0),
    "cutmix_alpha": at_least(0),
    "backbone_lr_scale": between(0, 1),
}
TRAIN_RULES = {
    "epochs": at_least(1, "an integer"),
    "batch_size": at_least(1, "an integer"),
    "grad_accum": at_least(1, "an integer"),
    "max_steps": at_least(0, "an integer", " (0 = no limit)"),
    "epoch_clips": at_least(0, "an integer", " (0 = one pass)"),
    "max_minutes": at_least(0, "a number", " (0 = no budget)"),
    "expected_steps": at_least(0, "an integer"),
    "expected_steps_minutes": at_least(0),
    "ckpt_every_steps": at_least(0, "an integer"),
    "log_every": at_least(1, "an integer"),
    "seed": at_least(0, "an integer"),
}


@dataclass
class ModelConfig:
    name: str = "sevnet_s"
    dropout: float = 0.5  # before the classifier; per dataset (paper: 0.5 small, 0.2 medium datasets)
    overrides: dict[str, Any] = field(default_factory=dict)  # any create_model keyword, e.g. block: r3d
    init_from: str | None = None  # fine-tune: a sevnet checkpoint, a safetensors state dict, or a shipped prior
    # by name (sevnet/weights); empty or null = from scratch

    def __post_init__(self) -> None:
        check_values("model", self, {"dropout": between(0, 1, high_open=True)})
        own = sorted({"dropout", "num_classes"} & set(self.overrides or {}))
        if own:  # create_model would get them twice: a TypeError far from the config
            raise ConfigError(
                f"model.overrides.{own[0]}: set by the config itself, not an override "
                f"({'model.dropout' if own[0] == 'dropout' else 'the dataset gives the class count'})"
            )


@dataclass
class OptimConfig:
    name: OptimName = OptimName.sgd  # sgd (the paper's) | adamw (decoupled weight decay; small datasets)
    lr: float = 0.01  # at base_batch; scaled linearly with the global batch (Goyal et al.)
    base_batch: int = 64
    momentum: float = 0.9  # sgd
    nesterov: bool = True  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    weight_decay: float = 5e-5  # not applied to BN and biases
    warmup_epochs: float = 2.0  # linear warm-up from warmup_factor * lr (capped at 10% of a time budget)
    warmup_factor: float = 0.1
    min_lr_factor: float = 0.0  # cosine decays to min_lr_factor * lr
    label_smoothing: float = 0.0
    # Mixup / CutMix on the batch where the model is (engine/mixing.py): Beta(alpha, alpha) ratios,
    # 0 = off; with both on, each batch uses one of them
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # StillMix (engine/mixing.py): the share of clips blended with a still frame of another clip, labels kept;
    # makes a video's look a worse cue than its motion. 0 = off; auto: 0.5 with up to 20 training videos per
    # class, else off (it gained with 5 and 15 videos per class and cost up to 3 points with 60)
    stillmix_prob: float | int | str = 0.0
    # lr multiplier of every tensor but the classifier (fine-tuning from model.init_from: e.g. 0.1 moves the
    # pretrained features a tenth as fast as the new classifier; 0 keeps them as loaded; 1 = one lr)
    backbone_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        check_values("optim", self, OPTIM_RULES)
        p = self.stillmix_prob
        if p != "auto" and not (is_number(p) and 0 <= p <= 1):
            raise ConfigError(f"optim.stillmix_prob must be a number in [0, 1] or auto, got {p!r}")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers [beta1, beta2], got {self.betas!r}")


@dataclass
class TrainConfig:
    epochs: int = 64  # with max_minutes: an upper bound only
    batch_size: int = 8  # per process
    grad_accum: int = 1  # optimizer step every grad_accum batches
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs)
    # Clips per epoch, all processes together (0 = one pass over the training set). Whole shuffled passes,
    # the last one cut: a small dataset then has epochs of a useful size, so per-epoch work (checkpoint,
    # evaluation every eval.every_epochs, warm-up in epochs) keeps the same cadence whatever its size.
    epoch_clips: int = 0
    # Training-time budget (evaluation excluded): the LR schedule spans it and ends at the minimum
    # LR, then the model is evaluated (0 = no budget; the schedule spans the epochs).
    max_minutes: float = 0.0
    # With max_minutes: the optimizer steps the budget was chosen to buy (a config's measured figures).
    # A run that ends with fewer than half of them says so, and how many minutes would buy them.
    expected_steps: int = 0
    # The budget expected_steps was measured for: a run with another train.max_minutes expects as many
    # more or fewer steps (0: train.max_minutes itself)
    expected_steps_minutes: float = 0.0
    # auto (a GPU when PyTorch sees one, else the CPU) | cpu | cuda (GPU LOCAL_RANK: one per torchrun
    # process) | cuda:N (one GPU, one process). Evaluation and the demo use it too.
    device: str = "auto"
    amp: AmpMode = AmpMode.auto
    channels_last: ChannelsLast = ChannelsLast.auto
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under DDP (CUDA only)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms: bit-identical resume on CPU
    out_dir: str = "runs/experiment"
    ckpt_every_steps: int = 0  # also checkpoint every N optimizer steps (0 = once per epoch)
    nan_policy: NanPolicy = NanPolicy.stop
    log_every: int = 10  # steps between TensorBoard scalars
    progress: bool = True  # rank 0: a bar on a terminal, else a line per quarter of a long epoch (epoch lines: always)

    def __post_init__(self) -> None:
        check_values("train", self, TRAIN_RULES)
        self.device = check_device_spec(self.device, "train.device")


@dataclass
class EvalConfig:
    every_epochs: int = 1  # validate every N epochs (0 = only at the end)
    batch_size: int = 8
    split: str = "val"
    both_ways: BothWays = BothWays.off  # auto: forwards and backwards where data.reverse: auto finds pairs

    def __post_init__(self) -> None:
        check_values("eval", self, {"every_epochs": at_least(0, "an integer"), "batch_size": at_least(1, "an integer")})
        if self.split not in ("train", "training", "val", "validation", "validate", "valid", "test"):
            raise ConfigError(f"eval.split must be train, val or test, got {self.split!r}")


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def default_config() -> ExperimentConfig:
    return ExperimentConfig()


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Schema defaults, then the YAML at ``path`` (if any), then dotted ``key=value`` overrides."""
    cfg: DictConfig = OmegaConf.structured(ExperimentConfig)
    try:
        if path is not None:
            path = resolve_config(path)
            cfg = _merge_keeping_missing(cfg, _yaml_switches(_read_yaml(path)))
        if overrides:
            cfg = _merge_keeping_missing(cfg, _yaml_switches(OmegaConf.from_dotlist(list(overrides))))
            _replace_emptied(cfg, overrides)
        _refuse_env(cfg, f"invalid config in {path}: " if path else "invalid config: ")
        _refuse_missing(cfg, path)
    except (ConfigKeyError, ValidationError) as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}: {_explain(err)}") from None
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # package data (pyproject: configs/**/*.yaml)


def shipped_configs() -> dict[str, Path]:
    """The configs installed with sevnet, by name (file name without .yaml), sorted."""
    return {p.stem: p for p in sorted(SHIPPED_CONFIGS.glob("*.yaml"))}


def config_purpose(path: Path) -> str:
    """A config's one-line purpose: its first comment line."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and line.strip("# "):
            return line.lstrip("#").strip()
    return ""


def resolve_config(ref: str | Path) -> Path:
    """A config argument: an existing file first (a path always wins), else the name of a shipped
    config with or without .yaml, so ``sevnet train folder_sevnet_xs`` works from any folder after
    ``pip install``. Anything else is a FileNotFoundError that lists the shipped names."""
    path = Path(ref)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    named = path.parent == Path(".") or path.parent.name == "configs"  # a name, or a checkout's configs/NAME.yaml
    if named and name in shipped:
        return shipped[name]
    raise NotFoundError(f"config file not found: {ref} (a path, or a shipped config: {', '.join(shipped)})")


def _read_yaml(path: Path) -> DictConfig:
    """The YAML mapping at ``path``; a syntax error or a non-mapping is a ConfigError naming the file."""
    try:
        node = OmegaConf.load(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: YAML syntax error ({getattr(err, 'problem', None) or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: a config is a mapping of sections (model:, data:, train: ...), not a list")
    return node


ENV_RESOLVER = re.compile(r"\$\{\s*oc\.env\s*:")


def _refuse_env(node: Any, prefix: str, key: str = "") -> None:
    """Refuse ``${oc.env:...}``: a run stores its config (config.yaml, checkpoint metadata), which
    would then hold the variable's value, e.g. a secret, in plain text."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict | list):
        for k, v in node.items() if isinstance(node, dict) else enumerate(node):
            _refuse_env(v, prefix, f"{key}.{k}" if key else str(k))
    elif isinstance(node, str) and ENV_RESOLVER.search(node):
        raise ConfigError(
            f"{prefix}{key}: ${{oc.env:...}} is not supported: sevnet would store the variable's value in the run's "
            f"config.yaml and checkpoints; write the value itself, or pass {key}=VALUE on the command line"
        )


def _merge_keeping_missing(cfg: DictConfig, node: DictConfig) -> DictConfig:
    """``OmegaConf.merge``, except that a ``???`` (a value the file requires, e.g. ``data.root: ???``)
    replaces the default: a merge alone keeps the default, so a required data.root became ``.``."""
    required = OmegaConf.missing_keys(node)
    merged = OmegaConf.merge(cfg, node)
    for key in required:
        OmegaConf.update(merged, key, "???", merge=False)
    return merged


def _refuse_missing(cfg: DictConfig, path: Path | None) -> None:
    """A ConfigError naming every required key (``???``) that nothing gave a value."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        where = f" in {path}" if path else ""
        given = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(
            f"invalid config{where}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required "
            f"(??? in the file): give {'it' if len(missing) == 1 else 'them'} on the command line, e.g. {given}"
        )


def _replace_emptied(cfg: DictConfig, overrides: list[str]) -> None:
    """``key={}`` on the command line empties a mapping (a merge alone would keep the file's keys),
    e.g. ``model.overrides={}`` to train a peer with a config that sets SEVNet options."""
    for item in overrides:
        key, _, value = item.partition("=")
        if value.strip() == "{}":
            OmegaConf.update(cfg, key.strip(), {}, merge=False)


def _explain(err: ConfigKeyError | ValidationError) -> str:
    """The key first, then OmegaConf's reason (which lists an Enum's valid values)."""
    msg = str(err.msg if hasattr(err, "msg") else err).split("\n")[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {msg}" if key else msg


def _enum_keys() -> list[tuple[str, str]]:
    """(section, key) of every Enum-typed key of the schema."""
    out = []
    for section, kind in typing.get_type_hints(ExperimentConfig).items():
        for key, hint in typing.get_type_hints(kind).items():
            if isinstance(hint, type) and issubclass(hint, StrEnum):
                out.append((section, key))
    return out


def _yaml_switches(node: DictConfig) -> DictConfig:
    """YAML reads an unquoted ``on``/``off`` as a boolean; give an Enum key the word back."""
    for section, key in _enum_keys():
        value = OmegaConf.select(node, f"{section}.{key}", default=None)
        if isinstance(value, bool):  # a word the key does not take is then rejected by name
            node[section][key] = "on" if value else "off"
    return node


def to_container(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able values (Enums as their names) of a config or a section, e.g. for checkpoint metadata."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)  # type: ignore[return-value]


def to_yaml(cfg: ExperimentConfig) -> str:
    """The config as YAML that ``load_config`` reads back to an equal config (a run's config.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))

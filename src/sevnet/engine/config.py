"""Experiment configs: one flat YAML per experiment over a typed schema (OmegaConf).

Precedence: the schema's defaults < the YAML file < ``key=value`` overrides from the command
line. A key that is not in the schema is an error naming the key, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from sevnet.data.config import DataConfig


@dataclass
class ModelConfig:
    name: str = "sevnet_s"
    dropout: float = 0.5  # before the classifier; per dataset (paper: 0.5 small, 0.2 medium datasets)
    overrides: dict[str, Any] = field(default_factory=dict)  # any create_model keyword, e.g. block: r3d


@dataclass
class OptimConfig:
    lr: float = 0.01  # at base_batch; scaled linearly with the global batch (Goyal et al.)
    base_batch: int = 64
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5  # not applied to BN and biases
    warmup_epochs: float = 2.0  # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.1
    min_lr_factor: float = 0.0  # cosine decays to min_lr_factor * lr
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 64
    batch_size: int = 8  # per process
    grad_accum: int = 1  # optimizer step every grad_accum batches
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs)
    max_minutes: float = 0.0  # stop after this wall-clock budget, then evaluate (0 = no limit)
    amp: str = "auto"  # auto (bf16 on CUDA if supported, else fp16; off on CPU) | off | bf16 | fp16
    channels_last: str = "auto"  # auto (on CUDA) | on | off
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under DDP (CUDA only)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms: bit-identical resume on CPU
    out_dir: str = "runs/experiment"
    ckpt_every_steps: int = 0  # also checkpoint every N optimizer steps (0 = once per epoch)
    nan_policy: str = "stop"  # stop | skip: what a NaN/inf loss does
    log_every: int = 10  # steps between TensorBoard scalars
    progress: bool = True  # tqdm bar on rank 0


@dataclass
class EvalConfig:
    every_epochs: int = 1  # validate every N epochs (0 = only at the end)
    batch_size: int = 8
    split: str = "val"


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def default_config() -> DictConfig:
    return OmegaConf.structured(ExperimentConfig)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> DictConfig:
    """Schema defaults, then the YAML at ``path`` (if any), then dotted ``key=value`` overrides."""
    cfg = default_config()
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {path}")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except (ConfigKeyError, ValidationError) as err:
        where = f" in {path}" if path else ""
        raise ValueError(f"invalid config{where}: {err.msg if hasattr(err, 'msg') else err}") from None
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

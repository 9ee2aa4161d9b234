"""Engine: configs, the training loop (one process or DDP), checkpoints, evaluation, metrics."""

from .checkpoint import CheckpointError, load_model, read_meta, save_checkpoint
from .config import load_config
from .evaluate import evaluate
from .trainer import NonFiniteLossError, WorkerCrashError, train

__all__ = [
    "CheckpointError",
    "NonFiniteLossError",
    "WorkerCrashError",
    "evaluate",
    "load_config",
    "load_model",
    "read_meta",
    "save_checkpoint",
    "train",
]

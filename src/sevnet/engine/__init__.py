"""Engine: configs, the training loop (one process or DDP), checkpoints, evaluation, metrics."""

from .card import ModelCard
from .checkpoint import CheckpointError, load_model, read_card, read_meta, save_checkpoint, unwrap_model
from .config import load_config
from .evaluate import evaluate
from .state import TrainResult, TrainState
from .trainer import NonFiniteLossError, Trainer, WorkerCrashError, train

__all__ = [
    "CheckpointError",
    "ModelCard",
    "NonFiniteLossError",
    "TrainResult",
    "TrainState",
    "Trainer",
    "WorkerCrashError",
    "evaluate",
    "load_config",
    "load_model",
    "read_card",
    "read_meta",
    "save_checkpoint",
    "train",
    "unwrap_model",
]

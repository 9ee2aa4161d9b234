"""What a training run is at a moment (``TrainState``, saved in every checkpoint) and what it
returns (``TrainResult``).

The resume position lives in one place: ``TrainState``. A checkpoint holds it (as JSON) beside the
weights, the optimizer state and the RNG state, so ``--resume`` continues at the same epoch, batch
and step, with the same learning rate (the schedule is a function of the state, not an object).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .config import ExperimentConfig


@dataclass
class TrainState:
    """Where a run stands; everything in it is JSON (the checkpoint header holds it)."""

    epoch: int = 0  # the epoch in progress (= epochs completed)
    batch: int = 0  # batches of ``epoch`` already consumed: a resume skips them
    step: int = 0  # optimizer steps taken
    elapsed_s: float = 0.0  # training seconds (evaluation excluded): the clock a time budget runs on
    eval_s: float = 0.0  # seconds spent in validation during training (outside the budget)
    clips_seen: int = 0  # training clips, all ranks
    nonfinite_skipped: int = 0  # steps skipped for a NaN/inf loss (train.nan_policy=skip)
    metrics: dict[str, Any] = field(default_factory=dict)  # the latest validation metrics
    best_metric: float | None = None  # best validation top-1 (mAP for multi-label) so far
    best_epoch: int | None = None
    eval_errors: list[dict[str, Any]] = field(default_factory=list)  # evaluations that failed: epoch, error
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch (metrics.csv)
    lrs: list[float] = field(default_factory=list)  # learning rate after each step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """From ``to_dict``'s output, or from a checkpoint written before TrainState existed."""
        data = dict(data)
        if "batch_in_epoch" in data:  # sevnet <= 0.x: the position had its own keys
            data["batch"] = data.pop("batch_in_epoch")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    """What ``train`` / ``Trainer.fit`` hands back (rank 0 has the metrics; other ranks get {})."""

    model: nn.Module  # the trained model, unwrapped (no DDP / torch.compile wrapper)
    metrics: dict[str, Any]  # the final validation metrics ({} without a validation set)
    history: list[dict[str, Any]]
    steps: int
    checkpoint: Path  # <out_dir>/checkpoints/model.safetensors
    last_checkpoint: Path  # <out_dir>/checkpoints/last.safetensors (what --resume reads)
    out_dir: Path
    train_time_s: float  # training seconds over all sessions of the run, evaluation excluded
    clips_seen: int
    nonfinite_steps_skipped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of samples that failed to load
    eval_errors: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    config: ExperimentConfig | None = None  # the run's config as written to config.yaml

    @property
    def train_clips_per_s(self) -> float:
        return self.clips_seen / max(self.train_time_s, 1e-6)

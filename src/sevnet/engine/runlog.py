"""Rank-0 outputs of a training run: per-epoch CSV, TensorBoard scalars, the per-epoch line, curves PNG.

The rows and the lr history themselves live in ``TrainState`` (they are resumed with it); this
module only writes them out.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from .rundir import write_text_atomically


class RunLog:
    """Writes what the run's state holds; a no-op on ranks other than 0."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.out_dir, self.enabled = out_dir, enabled
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))

    def step(self, step: int, loss: float, lr: float, every: int) -> None:
        if self.tb is not None and step % max(every, 1) == 0:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def epoch(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv (columns may grow, e.g. once validation runs) and log the last row."""
        if not self.enabled or not history:
            return
        keys = list(dict.fromkeys(k for r in history for k in r))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text_atomically(self.out_dir / "metrics.csv", text.getvalue())
        row = history[-1]
        for key, value in row.items():
            if isinstance(value, float) and self.tb is not None:
                self.tb.add_scalar(f"epoch/{key}", value, row["epoch"])

    def close(self, history: list[dict[str, Any]], lrs: list[float]) -> None:
        if not self.enabled:
            return
        if self.tb is not None:
            self.tb.close()
        if history:
            plot_curves(history, lrs, self.out_dir / "training_curves.png")


def write_skipped_csv(path: Path, named: list[tuple[list[tuple[str, str]], list[tuple[str, str]]]]) -> dict[str, Any]:
    """``skipped.csv`` (path, status, reason, times) from every rank's (skipped, partial) lists: each file
    a sample failed to load from (``skipped``) or used although it decodes only in part (``partial``),
    once per status however often it came up. Returns the summary.json keys naming them."""
    rows: dict[tuple[str, str], list[Any]] = {}
    for skipped, partial in named:
        for status, pairs in (("skipped", skipped), ("partial", partial)):
            for file, reason in pairs:
                rows.setdefault((file, status), [file, status, reason, 0])[3] += 1
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "status", "reason", "times"])
    writer.writerows(sorted(rows.values()))
    write_text_atomically(path, text.getvalue())
    return {
        "skipped_files": sorted(file for file, status in rows if status == "skipped"),
        "partial_files": sorted(file for file, status in rows if status == "partial"),
    }


def budget_text(elapsed_s: float, budget_s: float) -> str:
    """Training time against the budget, e.g. ``3.2/6.0 min``."""
    return f"{elapsed_s / 60:.1f}/{budget_s / 60:.1f} min"


def epoch_line(row: dict[str, Any], budget_s: float = 0.0) -> str:
    """One line per epoch, printed whether or not the progress bar is on."""
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4f}"]
    for key in ("train_top1", "val_top1", "val_top5", "val_mean_class_accuracy", "val_mAP"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['train_clips_per_s']:.1f} clips/s")
    if row.get("input_wait_share") is not None:
        parts.append(f"input wait {row['input_wait_share']:.0%}")
    if budget_s:
        parts.append(budget_text(row["train_time_s"], budget_s))
    return " | ".join(parts)


def plot_curves(history: list[dict[str, Any]], lrs: list[float], path: Path) -> None:
    """Loss, accuracy and learning-rate curves in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [r["epoch"] for r in history]
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0].set_title("training loss")
    for key in ("train_top1", "val_top1", "val_mean_class_accuracy", "val_mAP"):
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            axes[1].plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
    axes[1].set_title("accuracy")
    axes[1].legend(fontsize=7)
    axes[2].plot(lrs)
    axes[2].set_title("learning rate (per step)")
    for ax, label in zip(axes, ("epoch", "epoch", "step")):
        ax.set_xlabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

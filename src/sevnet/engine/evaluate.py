"""Evaluation: single- or multi-view (clips x crops, scores averaged), each benchmark's metrics,
a JSON report and a confusion-matrix PNG. Under DDP every sample is scored exactly once (the
evaluation sampler never pads) and rank 0 computes the metrics."""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevnet.data import build_dataset, build_loader
from sevnet.errors import SevnetError

from .both_ways import both_ways_scores
from .card import ModelCard
from .checkpoint import load_model
from .config import ExperimentConfig
from .distributed import DistInfo, gather_objects, init_distributed
from .metrics import class_scores, classification_metrics, confusion_matrix, multilabel_metrics
from .rundir import check_folder


@torch.no_grad()
def predict_loader(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    loader: Any,
    multi_label: bool,
    info: DistInfo,
    autocast: Any = contextlib.nullcontext,
    both_ways: Sequence[int | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Scores averaged over views for every sample of every rank: (indices, probs, targets, skipped).
    ``model``: a module, or any function of a clip batch to logits (an exported model's runner).
    ``both_ways``: each class's time-reversed partner, to score every view both ways (engine/both_ways.py)."""

    def score(clips: torch.Tensor) -> torch.Tensor:
        with autocast():
            return class_scores(model(clips).float(), multi_label)

    if isinstance(model, nn.Module):
        model.eval()
    indices, probs, targets, skipped = [], [], [], []
    for batch in loader:
        skipped += batch["skipped"]
        if batch["clip"] is None:
            continue
        clip = batch["clip"].to(info.device, non_blocking=True)
        b, v = clip.shape[:2]
        flat = clip.flatten(0, 1)
        scores = both_ways_scores(score, flat, both_ways) if both_ways else score(flat)
        probs.append(scores.view(b, v, -1).mean(1).cpu())
        targets.append(batch["target"])
        indices.append(batch["index"])
    local = (
        torch.cat(indices) if indices else torch.empty(0, dtype=torch.long),
        torch.cat(probs) if probs else torch.empty(0),
        torch.cat(targets) if targets else torch.empty(0),
        skipped,
    )
    parts = gather_objects(local, info)
    idx = torch.cat([p[0] for p in parts])
    order = torch.argsort(idx)
    nonempty = [p for p in parts if len(p[0])]
    if not nonempty:
        return idx, torch.empty(0), torch.empty(0), [s for p in parts for s in p[3]]
    all_probs = torch.cat([p[1] for p in nonempty])[order]
    all_targets = torch.cat([p[2] for p in nonempty])[order]
    return idx[order], all_probs, all_targets, [s for p in parts for s in p[3]]


class NoEvaluationSampleError(SevnetError, RuntimeError):
    """Not one evaluation sample could be loaded; the message names the files that failed."""


def compute_metrics(
    probs: torch.Tensor, targets: torch.Tensor, multi_label: bool, skipped: list[tuple[str, str]] | None = None
) -> dict[str, float]:
    if len(targets) == 0:
        failed = "; ".join(f"{p}: {r}" for p, r in (skipped or [])[:5])
        more = f" and {len(skipped) - 5} more" if skipped and len(skipped) > 5 else ""
        what = f"{len(skipped)} failed: {failed}{more}" if skipped else "the split lists none"
        raise NoEvaluationSampleError(f"no evaluation sample could be loaded ({what})")
    return multilabel_metrics(probs, targets) if multi_label else classification_metrics(probs, targets)


def save_confusion_png(probs: torch.Tensor, targets: torch.Tensor, classes: list[str], path: Path) -> None:
    """Counts and the row-normalised view (each true class's share, i.e. its recall on the diagonal)
    side by side; full class names, wrapped; cell text white on dark cells. Over 40 classes: no text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(probs, targets).numpy()
    k = len(classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(4 + 0.45 * k, 14)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side + 1))
    names = [textwrap.fill(c, 18) for c in classes]
    for ax, values, title, fmt in (
        (axes[0], cm, "counts", "{:.0f}"),
        (axes[1], norm, "share of each true class", "{:.0%}"),
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set(xlabel="predicted", ylabel="true", title=title)
        if k > 40:
            continue
        ax.set_xticks(range(k), names, rotation=90, fontsize=6)
        ax.set_yticks(range(k), names, fontsize=6)
        dark = values.max() / 2
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if values[i, j] > dark else "black")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(
    cfg: ExperimentConfig, checkpoint_path: str | Path, out_dir: str | Path | None = None, device: str | None = None
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``cfg.eval.split`` with ``cfg.data``'s views, in float32 on ``device``
    (default ``cfg.train.device``); write report files."""
    out = check_folder(out_dir or Path(cfg.train.out_dir) / "eval", "eval --out" if out_dir else "the report folder")
    info = init_distributed(device or cfg.train.device, "--device" if device else "train.device")
    dataset = build_dataset(cfg.data, cfg.eval.split, train=False)
    model, meta = load_model(checkpoint_path, expect_num_classes=dataset.num_classes)
    model.to(info.device)
    loader = build_loader(dataset, cfg.eval.batch_size, train=False, cfg_data=cfg.data, distributed=info.distributed,
                          pin_memory=info.device.type == "cuda")  # fmt: skip
    card = ModelCard.from_meta(meta)
    _, probs, targets, skipped = predict_loader(model, loader, dataset.multi_label, info, both_ways=card.both_ways)
    if not info.is_main:
        return {}
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint_path),
        "model": card.model,
        "split": cfg.eval.split,
        "views": {"clips": cfg.data.eval_clips, "crops": cfg.data.eval_crops, "both_ways": card.both_ways is not None},
        **compute_metrics(probs, targets, dataset.multi_label, skipped),
        "skipped": len(skipped),
        "skipped_files": [p for p, _ in skipped],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    if not dataset.multi_label:
        save_confusion_png(probs, targets, dataset.classes, out / "confusion_matrix.png")
    report["report_dir"] = str(out)
    return report

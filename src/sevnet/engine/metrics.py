"""Each benchmark's metrics, from torchmetrics: top-1/top-5, mean class accuracy (FineGym's
headline), mAP over classes (Multi-Moments in Time)."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multilabel_average_precision,
)


def class_scores(logits: torch.Tensor | np.ndarray, multi_label: bool) -> torch.Tensor | np.ndarray:
    """The one place logits become class scores: softmax over the last axis, or for multi-label an
    independent sigmoid per class. A NumPy array in gives a NumPy array out (same dtype)."""
    if isinstance(logits, np.ndarray):
        return class_scores(torch.from_numpy(logits), multi_label).numpy()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``probs`` (N, K) class scores, ``targets`` (N,) class indices."""
    k = probs.shape[1]
    return {
        "top1": multiclass_accuracy(probs, targets, num_classes=k, average="micro").item(),
        "top5": multiclass_accuracy(probs, targets, num_classes=k, average="micro", top_k=min(5, k)).item(),
        # Mean over classes present in the targets (FineGym's "mean class accuracy").
        "mean_class_accuracy": _mean_class_accuracy(probs, targets),
        "num_samples": len(targets),
    }


def _mean_class_accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    per_class = multiclass_accuracy(probs, targets, num_classes=probs.shape[1], average=None)
    present = torch.bincount(targets, minlength=probs.shape[1]) > 0
    return per_class[present].mean().item()


def multilabel_metrics(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``targets`` (N, K) multi-hot. mAP = mean over classes with at least one positive."""
    k = probs.shape[1]
    per_class = multilabel_average_precision(probs, targets.long(), num_labels=k, average=None)
    present = targets.sum(0) > 0
    top1 = targets[torch.arange(len(targets)), probs.argmax(1)].float().mean().item()
    return {"mAP": per_class[present].nanmean().item(), "top1": top1, "num_samples": len(targets)}


def confusion_matrix(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return multiclass_confusion_matrix(probs, targets, num_classes=probs.shape[1])

"""Optimizers and learning-rate schedules.

SGD (the paper's recipe) or AdamW (small datasets, fine-tuning); either way the lr is given at
``optim.base_batch`` and scaled linearly with the global batch, and BN weights and biases get no
weight decay. The schedule is a pure function of (step, training seconds), so a resumed run
recomputes the same lr from its ``TrainState`` and needs no scheduler state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sevnet.errors import ConfigError

from .config import OptimConfig, OptimName


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """``optim.lr`` is given at ``optim.base_batch`` clips; scale it linearly (Goyal et al.)."""
    return cfg.lr * global_batch / cfg.base_batch


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, global_batch: int, head: Sequence[nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """``optim.name``: sgd (momentum, Nesterov) or adamw (decoupled weight decay); no decay on
    BN and biases (1-d tensors) for either. ``optim.backbone_lr_scale`` multiplies the lr of every
    tensor but ``head`` (the classifier): a fine-tune from ``model.init_from`` can then move the
    pretrained features less than the new classifier (0 keeps them as loaded)."""
    lr = scaled_lr(cfg, global_batch)
    groups = _param_groups(model, cfg, lr, {id(p) for p in head})
    if cfg.name == OptimName.adamw:
        if len(cfg.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers, got {list(cfg.betas)}")
        betas = (float(cfg.betas[0]), float(cfg.betas[1]))
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas)
    else:
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]  # what the schedule's factor multiplies
    return optimizer


def _param_groups(model: nn.Module, cfg: OptimConfig, lr: float, head: set[int]) -> list[dict[str, Any]]:
    """(decay, no decay) groups; with a backbone lr scale, those of the backbone and of the head apart."""
    split = cfg.backbone_lr_scale != 1 and bool(head)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for key in [(False, False), (False, True)] + ([(True, False), (True, True)] if split else []):
        groups[key] = []  # a fixed group order: a checkpoint's optimizer state matches the groups
    for p in model.parameters():
        if p.requires_grad:
            groups[(split and id(p) in head, p.ndim <= 1)].append(p)
    scale = cfg.backbone_lr_scale if split else 1.0
    return [
        {"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay, "lr": lr if head_ else lr * scale}
        for (head_, no_decay), params in groups.items()
    ]


def lr_factor(step: int, warmup_steps: int, total_steps: int, warmup_factor: float, min_factor: float) -> float:
    """Linear warm-up from ``warmup_factor`` to 1, then cosine decay to ``min_factor``."""
    if step < warmup_steps:
        return warmup_factor + (1 - warmup_factor) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def budget_lr_factor(
    step: int,
    elapsed_s: float,
    budget_s: float,
    warmup_steps: int,
    warmup_factor: float,
    min_factor: float,
    warmup_share: float = 0.1,
) -> float:
    """A schedule over a training-time budget: cosine over the fraction of the budget spent,
    under a linear warm-up that ends after ``warmup_steps`` or ``warmup_share`` of the budget,
    whichever comes first. Reaches exactly ``min_factor`` when the budget is spent, so a
    budgeted run ends at the minimum lr however fast the machine is."""
    spent = min(max(elapsed_s / budget_s, 0.0), 1.0)
    cosine = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * spent))
    warm = max(step / warmup_steps if warmup_steps else 1.0, spent / warmup_share)
    ramp = warmup_factor + (1 - warmup_factor) * min(warm, 1.0)
    return min(ramp, cosine)


@dataclass(frozen=True)
class LRSchedule:
    """Per-step lr factor: over ``total_steps``, or over ``budget_s`` training seconds when set."""

    warmup_steps: int
    total_steps: int
    warmup_factor: float
    min_factor: float
    budget_s: float = 0.0

    def factor(self, step: int, elapsed_s: float) -> float:
        if self.budget_s > 0:
            return budget_lr_factor(
                step, elapsed_s, self.budget_s, self.warmup_steps, self.warmup_factor, self.min_factor
            )
        return lr_factor(step, self.warmup_steps, self.total_steps, self.warmup_factor, self.min_factor)

    def apply(self, optimizer: torch.optim.Optimizer, step: int, elapsed_s: float) -> float:
        """Set every group's lr for the next step; returns the first group's."""
        f = self.factor(step, elapsed_s)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f
        return optimizer.param_groups[0]["lr"]

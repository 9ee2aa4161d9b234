"""Scoring a clip both ways: as it is and played backwards.

A model trained with ``data.reverse: auto`` has learnt that a clip of class c played backwards is a clip of
c's time-reversed partner ("moving up" <-> "moving down"). Played backwards, a clip is then a second view
of the same evidence, one that disagrees with the first where a pair is hard to tell apart: each class's
score is the mean of its probability forwards and its partner's probability backwards (a class without a
partner keeps its forward probability; the scores are renormalised). It costs a second forward pass
(measured in docs/training.md, "Few examples per class").

``eval.both_ways: auto`` (off by default: from the shipped prior it gained nothing measurable) turns it on
where ``data.reverse: auto`` found pairs; the checkpoint records the partners (``both_ways`` in its
metadata), so ``sevnet eval``, ``sevnet predict`` and ``sevnet.load`` score the way the training run's
validation did, with any backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sevnet.data.reversal import reversal_labels

TIME_AXIS = 2  # of a (N, C, T, H, W) clip batch


def both_ways_partners(mode: str, reverse: str, classes: Sequence[str], multi_label: bool) -> list[int | None] | None:
    """Each class's time-reversed partner when clips are to be scored both ways, else None: ``mode`` auto,
    ``data.reverse`` auto, single-label, and at least one pair among the class names."""
    if mode == "off" or str(reverse) != "auto" or multi_label or not classes:
        return None
    partners = reversal_labels(classes)
    return partners if any(p is not None for p in partners) else None


def combine(forward: torch.Tensor, backward: torch.Tensor, partners: Sequence[int | None]) -> torch.Tensor:
    """(N, K) class probabilities of the clips and of the clips played backwards -> (N, K) both-ways scores."""
    index = torch.tensor([c if p is None else p for c, p in enumerate(partners)], device=forward.device)
    paired = torch.tensor([p is not None for p in partners], device=forward.device)
    mixed = torch.where(paired, (forward + backward[:, index]) / 2, forward)
    return mixed / mixed.sum(-1, keepdim=True)


def both_ways_scores(
    scores: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor, partners: Sequence[int | None]
) -> torch.Tensor:
    """``scores`` (clip batch -> (N, K) probabilities) of (N, C, T, H, W) ``clips``, scored both ways."""
    return combine(scores(clips), scores(clips.flip(TIME_AXIS)), partners)

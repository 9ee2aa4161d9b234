"""Parameter and FLOP counting. FLOPs here are multiply-adds (the video literature's "FLOPs")."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gmacs(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Multiply-adds (in billions) of one forward pass on a zero input of ``input_shape``.

    ``FlopCounterMode`` counts 2 FLOPs per multiply-add; halving it gives the fvcore / X3D
    convention (X3D-S: 1.96 G at 13x160x160). Only matmul-like ops (conv, linear) are counted.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(input_shape))
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9

"""Parameter and FLOP counting. FLOPs here are multiply-adds (the video literature's "FLOPs")."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sevnet.device import model_device

from .layers import MotionCorrelation


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gmacs(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Multiply-adds (in billions) of one forward pass on a zero input of ``input_shape`` (made on the
    model's own device, so a model on a GPU is counted where it is).

    ``FlopCounterMode`` counts 2 FLOPs per multiply-add; halving it gives the fvcore / X3D
    convention (X3D-S: 1.96 G at 13x160x160). Only matmul-like ops (conv, linear) are counted.
    A ``MotionCorrelation`` counts its definition (keys x displacements per position), not the
    larger matmuls that compute it fastest: the figure does not depend on the implementation.
    """
    was_training = model.training
    model.eval()
    units = {name: m for name, m in model.named_modules() if isinstance(m, MotionCorrelation)}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: shapes.__setitem__(name, tuple(args[0].shape)))
             for name, m in units.items()]  # fmt: skip
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(input_shape, device=model_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    macs = counter.get_total_flops() / 2
    counts = counter.get_flop_counts()
    root = type(model).__name__
    for name, unit in units.items():
        matmuls = counts.get(f"{root}.{name}", {}).get(torch.ops.aten.bmm, 0) / 2
        macs += unit.macs(shapes[name]) - matmuls
    return macs / 1e9

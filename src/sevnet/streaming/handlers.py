"""The module types streaming knows: one registration each (plan layout, eager step, 4-D lowering).

A new streamable module type needs one ``register(Type, Handler(layout, eager, lower))`` call: its
state slots and their order then reach the eager step, the lowered step and the exported models
alike (``sevnet.streaming.plan``).
"""

from __future__ import annotations

from torch import nn

from sevnet.models.blocks import ResidualBlock, Shortcut
from sevnet.models.layers import ConvBN, MotionCorrelation, SqueezeExcite
from sevnet.models.sevnet import Stem

from . import eager, lowered
from .plan import Child, Handler, Slot, register


def _no_state(m: nn.Module) -> list[Slot | Child]:
    return []


def _children(m: nn.Module) -> list[Slot | Child]:
    return [Child(name) for name, _ in m.named_children()]


def _residual(m: nn.Module) -> list[Slot | Child]:
    # Blocks name their residual parts in the order residual() calls them (sevnet.models.blocks).
    return [Child(n) for n, _ in m.named_children() if n not in ("shortcut", "act")] + [Child("shortcut")]


def _conv_bn(m: ConvBN) -> list[Slot | Child]:
    return [Slot("buffer", "conv_buffer")] if m.causal_pad else []


# The default: any module that mixes no time (check_streamable refuses the known ones that do).
register(nn.Module, Handler(_no_state, eager.per_frame, lowered.per_frame))
register(nn.Identity, Handler(_no_state, eager.per_frame, lowered.identity))
register(nn.AvgPool3d, Handler(_no_state, eager.per_frame, lowered.avg_pool))
for _type in (nn.Sequential, Stem, Shortcut):  # each applies its children in order
    register(_type, Handler(_children, eager.sequence, lowered.sequence))
register(ResidualBlock, Handler(_residual, eager.residual, lowered.residual))
register(ConvBN, Handler(_conv_bn, eager.conv_bn, lowered.conv_bn))
register(SqueezeExcite, Handler(lambda m: [Slot("sum", "se_sum")], eager.squeeze_excite, lowered.squeeze_excite))
register(
    MotionCorrelation,
    Handler(lambda m: [Child("key"), Slot("previous", "conv_buffer"), Child("proj")], eager.motion, lowered.motion),
)

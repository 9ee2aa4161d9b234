"""The state plan: ONE walk of a causal SEVNet that fixes every state slot and who handles each module.

Each module type that streaming knows is registered once, with a ``Handler``:

- ``layout(module)``: its children to walk and its own state slots, in the order its step meets
  them (this order numbers the slots, so it is the order of the state tuple and of the exported
  models' state inputs and outputs);
- ``eager(node, x, ctx)``: its step on new frames (N, C, t, H, W), reading and writing its slots
  through ``ctx`` (``sevnet.streaming.eager``);
- ``lower(node, lower)``: its ops on one frame (N, C, H, W) for ``FrameStep``
  (``sevnet.streaming.lowered``), ``lower(child)`` lowering a child.

A module is handled by the registration of the first type in its MRO that has one; ``nn.Module``'s
is the per-frame default (a module that mixes no time: applied to the frames as they come). The
built-in registrations are in ``sevnet.streaming.handlers``. ``state_plan`` walks the model once
and returns the node tree (each node with its slot indices) and the slot names and kinds; both
executors run that tree and ``state_layout`` adds each slot's shape for a frame size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sevnet.errors import InputError, SevnetError
from sevnet.models.blocks import BLOCKS, ResidualBlock
from sevnet.models.layers import ConvBN, SqueezeExcite

HEAD = ("stem", "stages", "head_conv")  # the model's parts run on every frame before the head pool


class NotStreamableError(SevnetError, ValueError):
    """The model cannot be streamed (not causal, or a part that mixes time in an unknown way)."""


@dataclass(frozen=True)
class Slot:
    """A state tensor of the module itself: named ``<module path>.<role>``."""

    role: str
    kind: str


@dataclass(frozen=True)
class Child:
    """A child module (attribute ``name``) walked at this point of the step."""

    name: str


@dataclass(frozen=True)
class Handler:
    """How streaming runs one module type: its plan layout, its eager step and its 4-D lowering."""

    layout: Callable[[nn.Module], Sequence[Slot | Child]]
    eager: Callable[[Node, Any, Any], Any]  # (node, frames (N, C, t, H, W), eager context) -> frames
    lower: Callable[[Node, Callable[[Node], list]], list]  # (node, lower a child) -> ops on one frame


HANDLERS: dict[type, Handler] = {}


def register(module_type: type, handler: Handler) -> Handler:
    """Make streaming handle ``module_type`` (and its subclasses without their own) with ``handler``."""
    HANDLERS[module_type] = handler
    return handler


def handler_for(module: nn.Module) -> Handler:
    return next(HANDLERS[t] for t in type(module).__mro__ if t in HANDLERS)


@dataclass
class Node:
    """One module in the plan: its path, handler, state slots (role -> index) and walked children."""

    name: str
    module: nn.Module
    handler: Handler
    slots: dict[str, int] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedSlot:
    name: str
    kind: str


@dataclass(frozen=True)
class StatePlan:
    """The walked model: ``body`` (stem, stages, head_conv) and the state slots in tuple order.

    Slot 0 is the frame count, the last slot the head pool's (a running sum, or the last
    ``window`` frames' features); the body's slots lie between, in walking order.
    """

    model: nn.Module
    window: int
    body: tuple[Node, ...]
    slots: tuple[PlannedSlot, ...]

    @property
    def pool_slot(self) -> int:
        return len(self.slots) - 1


def _visit(module: nn.Module, name: str, slots: list[PlannedSlot]) -> Node:
    node = Node(name, module, handler_for(module))
    for item in node.handler.layout(module):
        if isinstance(item, Child):
            node.children[item.name] = _visit(getattr(module, item.name), f"{name}.{item.name}", slots)
        else:
            node.slots[item.role] = len(slots)
            slots.append(PlannedSlot(f"{name}.{item.role}", item.kind))
    return node


def state_plan(model: nn.Module, window: int = 0) -> StatePlan:
    """Check that ``model`` streams, and walk it once: the node tree and the state slots."""
    check_streamable(model)
    if window < 0:
        raise InputError(f"window must be >= 0 (0 = since reset), got {window}")
    slots = [PlannedSlot("frames", "count")]
    body = tuple(_visit(getattr(model, name), name, slots) for name in HEAD)
    slots.append(PlannedSlot("head.pool.window", "pool_window") if window else PlannedSlot("head.pool.sum", "pool_sum"))
    return StatePlan(model, window, body, tuple(slots))


def check_streamable(model: nn.Module) -> None:
    """Refuse, with the reason, a model whose step would not equal its clip forward."""
    missing = [n for n in (*HEAD, "pool", "dropout", "fc") if not hasattr(model, n)]
    if missing:
        raise NotStreamableError(f"{type(model).__name__} is not a SEVNet (no {', '.join(missing)})")
    if not getattr(getattr(model, "cfg", None), "causal", False):
        raise NotStreamableError(
            "the model was built with causal=False: its temporal convs see future frames. Build it with "
            "create_model(..., causal=True) (model.overrides.causal: true in a training config)"
        )
    pool = model.pool
    if not (isinstance(pool, nn.AdaptiveAvgPool3d) and pool.output_size in (1, (1, 1, 1))):
        raise NotStreamableError(f"the head pool must be a global average pool, got {pool}")
    for name, m in model.named_modules():
        if isinstance(m, ResidualBlock) and type(m) not in BLOCKS.values():
            raise NotStreamableError(f"{name}: unknown block {type(m).__name__}; streaming knows {sorted(BLOCKS)}")
        if isinstance(m, ConvBN) and m.conv.kernel_size[0] > 1 and m.causal_pad != m.conv.kernel_size[0] - 1:
            raise NotStreamableError(f"{name}: a temporal conv that is not causal")
        if isinstance(m, nn.Conv3d) and m.stride[0] != 1:
            raise NotStreamableError(f"{name}: strides time")
        if isinstance(m, SqueezeExcite) and not m.causal:
            raise NotStreamableError(f"{name}: an SE unit that pools over the whole clip")
        if isinstance(m, nn.AvgPool3d | nn.MaxPool3d) and first(m.kernel_size) != 1:
            raise NotStreamableError(f"{name}: a pool that mixes time")


def first(k: int | Sequence[int]) -> int:
    """The time entry of a kernel size, stride or padding (an int: the same for every dim)."""
    return k if isinstance(k, int) else k[0]

"""The eager step: a causal SEVNet's own modules run on new frames (N, 3, t, H, W), all state explicit.

Why this works: a causal SEVNet (``create_model(..., causal=True)``) never strides time and mixes
time only in (a) its left-padded temporal convs, which need the last ``k - 1`` frames of their
input, (b) its causal SE units, which pool a running mean, (c) its MotionCorrelation units, which
need the last frame's keys, and (d) the final average pool. Everything else works frame by frame.
So carrying that state lets each new frame cost about clip cost / T.

The state is a flat tuple of tensors, never a module attribute: ``step(model, state, frames)`` is a
pure function over the model's own modules (no weight is copied), which is what lets
``sevnet.streaming.export`` export it with the state as explicit inputs and outputs. The slots and
their order are the state plan's (``sevnet.streaming.plan``); ``state_layout`` adds their shapes.

State, in layout order (shapes without the batch dim; per stream of a batch):

- ``frames`` (1,): frames seen since reset, shared by every running mean (they all count alike);
- ``<conv>.buffer`` (C, k-1, H, W): the last k-1 input frames of each temporal conv (kernel k > 1);
- ``<motion>.previous`` (C, 1, H, W): the last frame's keys of each MotionCorrelation unit (same kind);
- ``<se>.sum`` (C,): each causal SE unit's running sum of per-frame pooled features;
- ``head.pool.sum`` (C,) in cumulative mode, or ``head.pool.window`` (C, W): the last W per-frame
  pooled head features in windowed mode (prediction over the last W frames).

A fresh state is zeros: zero buffers are exactly the causal convs' zero padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sevnet.models.layers import local_correlation

from .plan import Node, StatePlan, state_plan
from .state import State, StateEntry


class EagerContext:
    """One eager step's access to the state: reads slots by the plan's index, collects the new state.

    With ``state=None`` (the probe) a read hands out zeros shaped as the module asks and records
    the shape: one frame through the model discovers every slot's shape, whatever the frame size.
    """

    def __init__(self, plan: StatePlan, state: Sequence[Tensor] | None) -> None:
        if state is not None and len(state) != len(plan.slots):
            raise ValueError(f"state has {len(state)} tensors, the model uses {len(plan.slots)}")
        self.plan, self.state = plan, state
        self.new: list[Tensor | None] = [None] * len(plan.slots)
        self.shapes: list[tuple[int, ...] | None] = [None] * len(plan.slots)
        self.count: Tensor | None = None  # frames seen before these: every running mean's divisor

    def read_slot(self, index: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if self.state is not None:
            return self.state[index]
        self.shapes[index] = tuple(int(s) for s in shape)
        return like.new_zeros((like.shape[0], *shape))

    def read(self, node: Node, role: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Slot ``role`` of ``node``: (N, *shape); ``like`` gives the probe's zeros their batch, dtype, device."""
        return self.read_slot(node.slots[role], shape, like)

    def write(self, node: Node, role: str, tensor: Tensor) -> None:
        self.new[node.slots[role]] = tensor

    def run(self, node: Node, x: Tensor) -> Tensor:
        """Apply ``node``'s module to new frames ``x`` through its handler."""
        return node.handler.eager(node, x, self)

    def new_state(self) -> State:
        missing = [s.name for s, t in zip(self.plan.slots, self.new) if t is None]
        if missing:
            raise RuntimeError(f"the eager step wrote no new value for state slots {missing}")
        return tuple(self.new)


# --- the built-in module types' eager steps (registered in sevnet.streaming.handlers) -------------


def per_frame(node: Node, x: Tensor, ctx: EagerContext) -> Tensor:
    """A module that mixes no time (check_streamable vetted it): applied to the new frames as a clip."""
    return node.module(x)


def sequence(node: Node, x: Tensor, ctx: EagerContext) -> Tensor:
    """A module that applies its children in order (nn.Sequential, the stem, a shortcut)."""
    for child in node.children.values():
        x = ctx.run(child, x)
    return x


def residual(node: Node, x: Tensor, ctx: EagerContext) -> Tensor:
    """A residual block: its residual parts in order, plus its shortcut, then its activation."""
    y = x
    for name, child in node.children.items():
        if name != "shortcut":
            y = ctx.run(child, y)
    return node.module.act(y + ctx.run(node.children["shortcut"], x))


def conv_bn(node: Node, x: Tensor, ctx: EagerContext) -> Tensor:
    """A causal kx1x1 conv over [last k-1 input frames, new frames]: no padding needed."""
    m = node.module
    if m.causal_pad:
        buf = ctx.read(node, "buffer", (x.shape[1], m.causal_pad, *x.shape[3:]), x)
        x = torch.cat([buf, x], 2)
        ctx.write(node, "buffer", x[:, :, -m.causal_pad :])
    return m.act(m.bn(m.conv(x)))


def motion(node: Node, x: Tensor, ctx: EagerContext) -> Tensor:
    """The new frames' keys against the frame before each: the buffered last key, then their own."""
    key = ctx.run(node.children["key"], x)
    buf = ctx.read(node, "previous", (key.shape[1], 1, *key.shape[3:]), key)
    joined = torch.cat([buf, key], 2)
    ctx.write(node, "previous", joined[:, :, -1:])
    return x + ctx.run(node.children["proj"], local_correlation(key, joined[:, :, :-1], node.module.radius))


def running_mean(per_frame: Tensor, total: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Means over frames 0..t for each new frame t, and the new running sum.

    ``per_frame`` (N, C, t, ...), ``total`` (N, C), ``count`` (N, 1): frames seen before.
    """
    extra = per_frame.dim() - 2
    sums = total.reshape(*total.shape, 1, *([1] * (extra - 1))) + per_frame.cumsum(2)
    ones = torch.ones_like(per_frame[:, :1])
    counts = count.reshape(count.shape[0], 1, *([1] * extra)) + ones.cumsum(2)
    return sums / counts, sums[:, :, -1].reshape(total.shape)


def squeeze_excite(node: Node, x: Tensor, ctx: EagerContext) -> Tensor:
    """A causal SE unit: each new frame gated by the running mean of the pooled frames so far."""
    m = node.module
    per_frame = x.mean((3, 4), keepdim=True)  # (N, C, t, 1, 1), as SqueezeExcite.pool
    total = ctx.read(node, "sum", (x.shape[1],), x)
    pooled, new_total = running_mean(per_frame, total, ctx.count)
    ctx.write(node, "sum", new_total)
    return x * m.gate(m.fc2(m.relu(m.fc1(pooled))))


# --- the step ------------------------------------------------------------------------------------


def _pool_head(plan: StatePlan, x: Tensor, ctx: EagerContext, every_frame: bool) -> Tensor:
    """Running (or windowed) mean of the head features over frames -> dropout -> fc: (N, t, K) or (N, K)."""
    model, window, count, slot = plan.model, plan.window, ctx.count, plan.pool_slot
    per_frame = x.mean((3, 4))  # (N, C, t)
    t = per_frame.shape[2]
    if window:
        buf = ctx.read_slot(slot, (per_frame.shape[1], window), per_frame)
        joined = torch.cat([buf, per_frame], 2)  # (N, C, W + t)
        ctx.new[slot] = joined[:, :, -window:]
        sums = F.avg_pool1d(joined[:, :, 1:], window, stride=1) * window  # frame j: the W frames ending at j
        seen = count + torch.ones_like(per_frame[:, :1, :]).cumsum(2).reshape(-1, t)  # (N, t)
        feats = sums / seen.clamp(max=window).unsqueeze(1)
    else:
        total = ctx.read_slot(slot, (per_frame.shape[1],), per_frame)
        feats, ctx.new[slot] = running_mean(per_frame, total, count)
    # The last frame only: a 2-D classifier input (OpenVINO int8 mis-shapes a batched 3-D MatMul + Gather).
    return model.fc(model.dropout(feats.transpose(1, 2) if every_frame else feats[:, :, -1]))


def _walk(
    plan: StatePlan, state: Sequence[Tensor] | None, frames: Tensor, every_frame: bool = True
) -> tuple[Tensor, EagerContext]:
    ctx = EagerContext(plan, state)
    ctx.count = ctx.read_slot(0, (1,), frames)
    ctx.new[0] = ctx.count + frames.shape[2]
    x = frames
    for node in plan.body:
        x = ctx.run(node, x)
    return _pool_head(plan, x, ctx, every_frame), ctx


def run_step(
    plan: StatePlan, state: Sequence[Tensor], frames: Tensor, every_frame: bool = True
) -> tuple[Tensor, State]:
    """``step`` on a plan already made (``state_plan(model, window)``): no walk of the model per call."""
    logits, ctx = _walk(plan, state, frames, every_frame)
    return logits, ctx.new_state()


def step(
    model: nn.Module, state: Sequence[Tensor], frames: Tensor, window: int = 0, every_frame: bool = True
) -> tuple[Tensor, State]:
    """Feed ``frames`` (N, 3, t, H, W), t >= 1, to a causal SEVNet in eval mode.

    Returns the logits after each new frame (N, t, K), or after the last one only (N, K), and the
    new state. ``window`` = 0 pools the head features over every frame since the state was fresh
    (what the model computes on the whole clip); W > 0 pools over the last W frames. A pure
    function: ``state`` is not modified.
    """
    return run_step(state_plan(model, window), state, frames, every_frame)


def plan_layout(plan: StatePlan, frame_size: tuple[int, int]) -> list[StateEntry]:
    """The plan's slots with their shapes for frames of ``frame_size`` (H, W): one probe frame's walk."""
    param = next(plan.model.parameters())
    probe = torch.zeros(1, 3, 1, *frame_size, dtype=param.dtype, device=param.device)
    was_training = plan.model.training
    plan.model.eval()  # the probe must not move BN running statistics
    try:
        with torch.no_grad():
            _, ctx = _walk(plan, None, probe)
    finally:
        plan.model.train(was_training)
    unread = [s.name for s, shape in zip(plan.slots, ctx.shapes) if shape is None]
    if unread:
        raise RuntimeError(f"the eager step never read the planned state slots {unread}")
    return [StateEntry(s.name, s.kind, shape) for s, shape in zip(plan.slots, ctx.shapes)]


def state_layout(model: nn.Module, frame_size: tuple[int, int], window: int = 0) -> list[StateEntry]:
    """Names, kinds and shapes of the state tensors for frames of ``frame_size`` (H, W)."""
    return plan_layout(state_plan(model, window), frame_size)


def zero_state(layout: list[StateEntry], batch: int, like: Tensor) -> State:
    """A fresh (zero) state for ``batch`` streams, with ``like``'s dtype and device."""
    return tuple(torch.zeros(batch, *e.shape, dtype=like.dtype, device=like.device) for e in layout)


def init_state(
    model: nn.Module, frame_size: tuple[int, int], batch: int = 1, window: int = 0
) -> tuple[State, list[StateEntry]]:
    """A fresh (zero) state for ``batch`` streams of ``frame_size`` frames, and its layout."""
    layout = state_layout(model, frame_size, window)
    return zero_state(layout, batch, next(model.parameters())), layout


def as_frames(frames: Tensor) -> Tensor:
    """(3, H, W) one frame, (N, 3, H, W) one frame of N streams, (N, 3, t, H, W) chunks -> 5-D."""
    if frames.dim() == 3:
        frames = frames[None]
    if frames.dim() == 4:
        frames = frames[:, :, None]
    if frames.dim() != 5 or frames.shape[1] != 3:
        raise ValueError(f"expected frames (3, H, W), (N, 3, H, W) or (N, 3, t, H, W), got {tuple(frames.shape)}")
    return frames

"""The lowered one-frame step: BatchNorm folded into the convs, every op on 4-D tensors.

Why: fed one frame at a time, a causal SEVNet pays its per-op costs once per frame instead of
once per clip, and the eager ``sevnet.streaming.step`` runs about 200 ops per frame on 5-D
tensors (conv3d, often on PyTorch's slow reference CPU kernel, then BatchNorm, ReLU, and the
cat/slice of each temporal buffer). Here a frame is (N, C, H, W) in channels-last memory
throughout, and every conv + BN is one op with the BN folded into its weights and bias:

- a dense kx1x1 conv (the 1x1x1 convs, the temporal convs) is one addmm over the frame's pixels,
  (pixels, k*C) @ (k*C, C_out), its k-1 buffered frames kept channels-last beside the frame;
- any other conv (the spatial 1x3x3 convs, grouped or k x 3 x 3 temporal convs) is one conv2d,
  buffered frames stacked as input channels (the 3-D weight reshaped).

The ops are made from the state plan (``sevnet.streaming.plan``): each module's registered
``lower`` gives its ops, with the plan's slot indices, so the state tuple and its layout are
``step``'s (only the buffers' strides differ) and the two interleave freely: ``Stream`` runs
chunks through ``step`` and single frames here. Eval only (BN uses its running statistics,
dropout is off), and the weights are read once: build a new ``FrameStep`` after changing them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from sevnet.models.layers import ConvBN, local_correlation

from .plan import Node, StatePlan, first, state_plan
from .state import State

# A lowered op: (frame features, input state, new state being filled, frame count before) -> features.
Op = Callable[[Tensor, Sequence[Tensor], list[Tensor], Tensor], Tensor]


def folded_weights(m: ConvBN) -> tuple[Tensor, Tensor | None]:
    """The conv weight and bias with the eval-mode BN folded in (as they are if BN is gone)."""
    conv, bn = m.conv, m.bn
    if not isinstance(bn, nn.BatchNorm3d):
        return conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    return w.detach(), b.detach()


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose every ConvBN is a conv with bias (BN replaced by Identity).

    Same outputs up to float rounding, half the ops: what streaming (inference only) should run.
    """
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBN) and isinstance(m.bn, nn.BatchNorm3d):
            w, b = folded_weights(m)
            m.conv.weight = nn.Parameter(w, requires_grad=False)
            m.conv.bias = nn.Parameter(b, requires_grad=False)
            m.bn = nn.Identity()
    return folded


def _relu(m: ConvBN) -> bool:
    return isinstance(m.act, nn.ReLU)


class _Linear:
    """A dense kx1x1 ConvBN (k >= 1) on one frame: one matmul over the pixels of a channels-last frame.

    With k > 1 the buffer is kept channels-last too, memory (N, H, W, k-1, C), so [buffer, frame] is
    one (pixels, k*C) matrix: a cat of two 2-D views, then addmm. Its logical shape stays (N, C, k-1,
    H, W), so ``step`` reads it (any strides); a buffer from ``step`` or ``init_state`` is copied
    into this layout on its first read here.
    """

    def __init__(self, m: ConvBN, slot: int | None) -> None:
        w, b = folded_weights(m)
        self.weight = w.flatten(2).permute(2, 1, 0).flatten(0, 1)  # (k*C_in, C_out): row j*C + c = frame j
        self.bias = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if b is None else b
        self.slot, self.relu = slot, _relu(m)

    def __call__(self, x: Tensor, state: Sequence[Tensor], new: list[Tensor], count: Tensor) -> Tensor:
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view of a channels-last frame
        if self.slot is not None:
            past = state[self.slot]
            rows = torch.cat([past.permute(0, 3, 4, 2, 1).reshape(-1, past.shape[2] * c), rows], 1)
            new[self.slot] = rows[:, c:].view(n, h, w, -1, c).permute(0, 4, 3, 1, 2)
        y = torch.addmm(self.bias, rows, self.weight)
        y = y.relu_() if self.relu else y
        return y.view(n, h, w, -1).permute(0, 3, 1, 2)


class _Conv:
    """Any other ConvBN on one frame: conv2d over [k-1 buffered frames, this frame] stacked as channels."""

    def __init__(self, m: ConvBN, slot: int | None) -> None:
        w, self.bias = folded_weights(m)
        c_out, c_in, k, kh, kw = w.shape
        self.weight = w.reshape(c_out, c_in * k, kh, kw)  # input channel c * k + j = frame j of channel c
        self.stride, self.padding, self.groups = m.conv.stride[1:], m.conv.padding[1:], m.conv.groups
        self.slot, self.relu = slot, _relu(m)

    def __call__(self, x: Tensor, state: Sequence[Tensor], new: list[Tensor], count: Tensor) -> Tensor:
        if self.slot is not None:
            joined = torch.cat([state[self.slot], x.unsqueeze(2)], 2)  # (N, C, k, H, W)
            new[self.slot] = joined[:, :, 1:]
            x = joined.flatten(1, 2)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        return y.relu_() if self.relu else y


class _SqueezeExcite:
    """A causal SE unit on one frame: the running mean pooled over frames 0..t gates this frame."""

    def __init__(self, m: nn.Module, slot: int) -> None:
        self.fc1 = (m.fc1.weight.detach().flatten(1), m.fc1.bias.detach())
        self.fc2 = (m.fc2.weight.detach().flatten(1), m.fc2.bias.detach())
        self.slot = slot

    def __call__(self, x: Tensor, state: Sequence[Tensor], new: list[Tensor], count: Tensor) -> Tensor:
        total = state[self.slot] + x.mean((2, 3))
        new[self.slot] = total
        hidden = F.linear(total / (count + 1), *self.fc1).relu_()
        return x * torch.sigmoid(F.linear(hidden, *self.fc2))[:, :, None, None]


class _Motion:
    """A MotionCorrelation unit on one frame: its keys against the buffered last frame's, projected, added."""

    def __init__(self, key: list[Op], slot: int, proj: list[Op], radius: int) -> None:
        self.key, self.slot, self.proj, self.radius = key, slot, proj, radius

    def __call__(self, x: Tensor, state: Sequence[Tensor], new: list[Tensor], count: Tensor) -> Tensor:
        key = chain(self.key, x, state, new, count).unsqueeze(2)  # (N, C, 1, H, W)
        new[self.slot] = key
        corr = local_correlation(key, state[self.slot], self.radius).squeeze(2)
        return x + chain(self.proj, corr, state, new, count)


class _Block:
    """A residual block: its residual ops, its shortcut ops, the sum, ReLU."""

    def __init__(self, residual: list[Op], shortcut: list[Op]) -> None:
        self.residual, self.shortcut = residual, shortcut

    def __call__(self, x: Tensor, state: Sequence[Tensor], new: list[Tensor], count: Tensor) -> Tensor:
        y = chain(self.residual, x, state, new, count)
        return y.add_(chain(self.shortcut, x, state, new, count)).relu_()


def chain(ops: list[Op], x: Tensor, state: Sequence[Tensor], new: list[Tensor], count: Tensor) -> Tensor:
    for op in ops:
        x = op(x, state, new, count)
    return x


# --- the built-in module types' lowerings (registered in sevnet.streaming.handlers) --------------

Lower = Callable[[Node], list[Op]]


def lower(node: Node) -> list[Op]:
    """``node``'s ops on one frame, by its registered handler."""
    return node.handler.lower(node, lower)


def per_frame(node: Node, lower: Lower) -> list[Op]:
    """Any other per-frame module (check_streamable vetted it), applied to the frame as a 1-frame clip."""
    m = node.module
    return [lambda x, state, new, count: m(x.unsqueeze(2)).squeeze(2)]


def identity(node: Node, lower: Lower) -> list[Op]:
    return []


def sequence(node: Node, lower: Lower) -> list[Op]:
    return [op for child in node.children.values() for op in lower(child)]


def residual(node: Node, lower: Lower) -> list[Op]:
    parts = [op for name, child in node.children.items() if name != "shortcut" for op in lower(child)]
    return [_Block(parts, lower(node.children["shortcut"]))]


def conv_bn(node: Node, lower: Lower) -> list[Op]:
    m, slot = node.module, node.slots.get("buffer")
    dense_1x1 = m.conv.kernel_size[1:] == (1, 1) and m.conv.stride == (1, 1, 1) and m.conv.groups == 1
    return [_Linear(m, slot) if dense_1x1 else _Conv(m, slot)]


def squeeze_excite(node: Node, lower: Lower) -> list[Op]:
    return [_SqueezeExcite(node.module, node.slots["sum"])]


def motion(node: Node, lower: Lower) -> list[Op]:
    key, proj = (lower(node.children[name]) for name in ("key", "proj"))
    return [_Motion(key, node.slots["previous"], proj, node.module.radius)]


def avg_pool(node: Node, lower: Lower) -> list[Op]:
    m = node.module
    if first(m.kernel_size) != 1 or first(m.stride) != 1:
        return per_frame(node, lower)
    k, s, p = (tuple(v)[1:] if isinstance(v, Sequence) else (v, v) for v in (m.kernel_size, m.stride, m.padding))
    args = (k, s, p, m.ceil_mode, m.count_include_pad, m.divisor_override)
    return [lambda x, state, new, count: F.avg_pool2d(x, *args)]


# --- the step ------------------------------------------------------------------------------------


class FrameStep:
    """``frame_step(state, frame) -> (logits, new_state)`` for one frame (N, 3, H, W) in eval mode.

    The same function as ``sevnet.streaming.step(model, state, frame[:, :, None], window,
    every_frame=False)``, on the same state tuple, at a fraction of the ops. ``plan``: the
    model's state plan, if already made (``state_plan(model, window)``).
    """

    def __init__(self, model: nn.Module, window: int = 0, plan: StatePlan | None = None) -> None:
        plan = state_plan(model, window) if plan is None else plan
        self.ops = [op for node in plan.body for op in lower(node)]
        self.slots, self.pool_slot, self.window = len(plan.slots), plan.pool_slot, plan.window
        self.fc = (model.fc.weight.detach(), model.fc.bias.detach())

    def __call__(self, state: Sequence[Tensor], frame: Tensor) -> tuple[Tensor, State]:
        if len(state) != self.slots:
            raise ValueError(f"state has {len(state)} tensors, the model uses {self.slots}")
        count, new = state[0], list(state)
        new[0] = count + 1
        x = frame.contiguous(memory_format=torch.channels_last)  # conv2d's fast layout; rows for matmuls
        feats = chain(self.ops, x, state, new, count).mean((2, 3))  # (N, C): this frame's head features
        pooled = state[self.pool_slot]
        if self.window:
            joined = torch.cat([pooled, feats.unsqueeze(2)], 2)[:, :, 1:]  # the last W frames
            new[self.pool_slot] = joined
            mean = joined.sum(2) / new[0].clamp(max=self.window)
        else:
            new[self.pool_slot] = pooled + feats
            mean = new[self.pool_slot] / new[0]
        return F.linear(mean, *self.fc), tuple(new)

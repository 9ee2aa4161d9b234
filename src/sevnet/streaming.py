"""Streaming inference over a causal SEVNet: one frame in, one prediction out, all state explicit.

Why this works: a causal SEVNet (``create_model(..., causal=True)``) never strides time and mixes
time only in (a) its left-padded temporal convs, which need the last ``k - 1`` frames of their
input, (b) its causal SE units, which pool a running mean, and (c) the final average pool.
Everything else works frame by frame. So carrying those three kinds of state lets each new frame
cost about clip cost / T, where a clip model re-runs a whole window for every prediction.

The state is a flat tuple of tensors, never a module attribute: ``step(model, state, frames)``
is a pure function over the model's own modules (no weight is copied), which is what lets
``sevnet.deploy.stream_export`` export it with the state as explicit inputs and outputs.
``state_layout`` names every tensor; ``Stream`` is the convenient stateful wrapper, and runs
single frames through ``sevnet.frame_step`` (same state, BN folded, 4-D ops: far fewer, cheaper ops).

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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sevnet.errors import SevnetError
from sevnet.frame_step import FrameStep, fold_batchnorm
from sevnet.models.blocks import BLOCKS, ResidualBlock
from sevnet.models.layers import ConvBN, MotionCorrelation, SqueezeExcite, local_correlation

State = tuple[Tensor, ...]


class NotStreamableError(SevnetError, ValueError):
    """The model cannot be streamed (not causal, or a part that mixes time in an unknown way)."""


@dataclass(frozen=True)
class StateEntry:
    """One state tensor: its name (module path + role), kind and shape without the batch dim."""

    name: str
    kind: str  # "count" | "conv_buffer" | "se_sum" | "pool_sum" | "pool_window"
    shape: tuple[int, ...]


class _Cursor:
    """Reads state tensors in layout order and collects their successors in the same order.

    With ``state=None`` it hands out zeros shaped like the layer needs and records the layout:
    one frame through the model discovers every shape, whatever the frame size.
    """

    def __init__(self, state: Sequence[Tensor] | None) -> None:
        self.state, self.index = state, 0
        self.layout: list[StateEntry] = []
        self.new: list[Tensor] = []

    def take(self, name: str, kind: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if self.state is None:
            self.layout.append(StateEntry(name, kind, tuple(int(s) for s in shape)))
            return like.new_zeros((like.shape[0], *shape))
        if self.index >= len(self.state):
            raise ValueError(f"state has {len(self.state)} tensors; the model needs more (at {name})")
        tensor = self.state[self.index]
        self.index += 1
        return tensor

    def put(self, tensor: Tensor) -> None:
        self.new.append(tensor)


def _conv_bn(m: ConvBN, x: Tensor, cur: _Cursor, name: str) -> Tensor:
    """A causal kx1x1 conv over [last k-1 input frames, new frames]: no padding needed."""
    if m.causal_pad:
        buf = cur.take(f"{name}.buffer", "conv_buffer", (x.shape[1], m.causal_pad, *x.shape[3:]), x)
        x = torch.cat([buf, x], 2)
        cur.put(x[:, :, -m.causal_pad :])
    return m.act(m.bn(m.conv(x)))


def _motion(m: MotionCorrelation, x: Tensor, cur: _Cursor, name: str, count: Tensor) -> Tensor:
    """The new frames' keys against the frame before each: the buffered last key, then their own."""
    key = _run(m.key, x, cur, f"{name}.key", count)
    buf = cur.take(f"{name}.previous", "conv_buffer", (key.shape[1], 1, *key.shape[3:]), key)
    joined = torch.cat([buf, key], 2)
    cur.put(joined[:, :, -1:])
    return x + _run(m.proj, local_correlation(key, joined[:, :, :-1], m.radius), cur, f"{name}.proj", count)


def _running_mean(per_frame: Tensor, total: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Means over frames 0..t for each new frame t, and the new running sum.

    ``per_frame`` (N, C, t, ...), ``total`` (N, C), ``count`` (N, 1): frames seen before.
    """
    extra = per_frame.dim() - 2
    sums = total.reshape(*total.shape, 1, *([1] * (extra - 1))) + per_frame.cumsum(2)
    ones = torch.ones_like(per_frame[:, :1])
    counts = count.reshape(count.shape[0], 1, *([1] * extra)) + ones.cumsum(2)
    return sums / counts, sums[:, :, -1].reshape(total.shape)


def _squeeze_excite(m: SqueezeExcite, x: Tensor, cur: _Cursor, name: str, count: Tensor) -> Tensor:
    per_frame = x.mean((3, 4), keepdim=True)  # (N, C, t, 1, 1), as SqueezeExcite.pool
    total = cur.take(f"{name}.sum", "se_sum", (x.shape[1],), x)
    pooled, new_total = _running_mean(per_frame, total, count)
    cur.put(new_total)
    return x * m.gate(m.fc2(m.relu(m.fc1(pooled))))


def _run(m: nn.Module, x: Tensor, cur: _Cursor, name: str, count: Tensor) -> Tensor:
    """Apply module ``m`` to new frames ``x``, reading and writing its state through ``cur``."""
    if isinstance(m, ConvBN):
        return _conv_bn(m, x, cur, name)
    if isinstance(m, SqueezeExcite):
        return _squeeze_excite(m, x, cur, name, count)
    if isinstance(m, MotionCorrelation):
        return _motion(m, x, cur, name, count)
    if isinstance(m, ResidualBlock):
        # Blocks name their residual parts in the order residual() calls them (sevnet.models.blocks).
        y = x
        for part_name, part in m.named_children():
            if part_name not in ("shortcut", "act"):
                y = _run(part, y, cur, f"{name}.{part_name}", count)
        return m.act(y + _run(m.shortcut, x, cur, f"{name}.shortcut", count))
    if isinstance(m, nn.Sequential) or type(m).__name__ == "Stem":
        for child_name, child in m.named_children():
            x = _run(child, x, cur, f"{name}.{child_name}", count)
        return x
    return m(x)  # per-frame (checked by check_streamable): identity, shortcut pooling, 1x1x1 convs


def _pool_head(model: nn.Module, x: Tensor, cur: _Cursor, count: Tensor, window: int, every_frame: bool) -> Tensor:
    """head_conv -> running (or windowed) mean over frames -> dropout -> fc: logits (N, t, K) or (N, K)."""
    per_frame = _run(model.head_conv, x, cur, "head_conv", count).mean((3, 4))  # (N, C, t)
    t = per_frame.shape[2]
    if window:
        buf = cur.take("head.pool.window", "pool_window", (per_frame.shape[1], window), per_frame)
        joined = torch.cat([buf, per_frame], 2)  # (N, C, W + t)
        cur.put(joined[:, :, -window:])
        sums = F.avg_pool1d(joined[:, :, 1:], window, stride=1) * window  # frame j: the W frames ending at j
        seen = count + torch.ones_like(per_frame[:, :1, :]).cumsum(2).reshape(-1, t)  # (N, t)
        feats = sums / seen.clamp(max=window).unsqueeze(1)
    else:
        total = cur.take("head.pool.sum", "pool_sum", (per_frame.shape[1],), per_frame)
        feats, new_total = _running_mean(per_frame, total, count)
        cur.put(new_total)
    # The last frame only: a 2-D classifier input (OpenVINO int8 mis-shapes a batched 3-D MatMul + Gather).
    return model.fc(model.dropout(feats.transpose(1, 2) if every_frame else feats[:, :, -1]))


def _walk(
    model: nn.Module, state: Sequence[Tensor] | None, frames: Tensor, window: int, every_frame: bool = True
) -> tuple[Tensor, _Cursor]:
    cur = _Cursor(state)
    count = cur.take("frames", "count", (1,), frames)
    cur.put(count + frames.shape[2])
    x = _run(model.stem, frames, cur, "stem", count)
    x = _run(model.stages, x, cur, "stages", count)
    logits = _pool_head(model, x, cur, count, window, every_frame)
    if state is not None and cur.index != len(state):
        raise ValueError(f"state has {len(state)} tensors, the model uses {cur.index}")
    return logits, cur


def step(
    model: nn.Module, state: Sequence[Tensor], frames: Tensor, window: int = 0, every_frame: bool = True
) -> tuple[Tensor, State]:
    """Feed ``frames`` (N, 3, t, H, W), t >= 1, to a causal SEVNet in eval mode.

    Returns the logits after each new frame (N, t, K), or after the last one only (N, K), and the
    new state. ``window`` = 0 pools the head features over every frame since the state was fresh
    (what the model computes on the whole clip); W > 0 pools over the last W frames. A pure
    function: ``state`` is not modified.
    """
    logits, cur = _walk(model, state, frames, window, every_frame)
    return logits, tuple(cur.new)


def state_layout(model: nn.Module, frame_size: tuple[int, int], window: int = 0) -> list[StateEntry]:
    """Names, kinds and shapes of the state tensors for frames of ``frame_size`` (H, W)."""
    return init_state(model, frame_size, 1, window)[1]


@torch.no_grad()
def init_state(
    model: nn.Module, frame_size: tuple[int, int], batch: int = 1, window: int = 0
) -> tuple[State, list[StateEntry]]:
    """A fresh (zero) state for ``batch`` streams of ``frame_size`` frames, and its layout."""
    check_streamable(model)
    param = next(model.parameters())
    probe = torch.zeros(batch, 3, 1, *frame_size, dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()  # the probe must not move BN running statistics
    try:
        _, cur = _walk(model, None, probe, window)
    finally:
        model.train(was_training)
    zeros = tuple(torch.zeros(batch, *e.shape, dtype=param.dtype, device=param.device) for e in cur.layout)
    return zeros, cur.layout


def check_streamable(model: nn.Module) -> None:
    """Refuse, with the reason, a model whose step would not equal its clip forward."""
    missing = [n for n in ("stem", "stages", "head_conv", "pool", "dropout", "fc") if not hasattr(model, n)]
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
        if isinstance(m, nn.AvgPool3d | nn.MaxPool3d) and _first(m.kernel_size) != 1:
            raise NotStreamableError(f"{name}: a pool that mixes time")


def _first(k: int | Sequence[int]) -> int:
    return k if isinstance(k, int) else k[0]


def as_frames(frames: Tensor) -> Tensor:
    """(3, H, W) one frame, (N, 3, H, W) one frame of N streams, (N, 3, t, H, W) chunks -> 5-D."""
    if frames.dim() == 3:
        frames = frames[None]
    if frames.dim() == 4:
        frames = frames[:, :, None]
    if frames.dim() != 5 or frames.shape[1] != 3:
        raise ValueError(f"expected frames (3, H, W), (N, 3, H, W) or (N, 3, t, H, W), got {tuple(frames.shape)}")
    return frames


class Stream:
    """A live classifier over a causal SEVNet: ``reset()``, then ``step(frames)`` -> logits.

    Holds the state tuple (``.state``, layout in ``.layout``) and nothing else; the model is put
    in eval mode (streaming is inference: BN must use its running statistics). It runs a copy of
    the model with BN folded into the convs, one frame at a time through ``FrameStep`` (4-D ops,
    the cheap path) and chunks through ``step``; the weights are read once, here.
    """

    def __init__(self, model: nn.Module, window: int = 0) -> None:
        check_streamable(model)
        if window < 0:
            raise ValueError(f"window must be >= 0 (0 = since reset), got {window}")
        self.model, self.window = model.eval(), window
        self.folded = fold_batchnorm(model)
        self.frame_step = FrameStep(self.folded, window)
        self.state: State | None = None
        self.layout: list[StateEntry] = []

    def reset(self) -> None:
        """Forget every frame: the next step starts a new stream (state built from its frame size)."""
        self.state = None

    @property
    def frames_seen(self) -> int:
        return 0 if self.state is None else int(self.state[0][0, 0])

    def run(self, state: Sequence[Tensor], frames: Tensor, every_frame: bool = False) -> tuple[Tensor, State]:
        """``step`` on this stream's folded model (pure): ``frames`` (N, 3, t, H, W) -> (logits, new state)."""
        if frames.shape[2] == 1:
            logits, new = self.frame_step(state, frames[:, :, 0])
            return (logits.unsqueeze(1) if every_frame else logits), new
        return step(self.folded, state, frames, self.window, every_frame)

    @torch.inference_mode()
    def step(self, frames: Tensor, every_frame: bool = False) -> Tensor:
        """Feed one frame or a chunk; logits after its last frame (N, K), or after each (N, t, K)."""
        x = as_frames(frames)
        if self.state is None:
            self.state, self.layout = init_state(self.folded, tuple(x.shape[-2:]), x.shape[0], self.window)
        logits, self.state = self.run(self.state, x, every_frame)
        return logits

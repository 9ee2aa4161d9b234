"""Small layers shared by every block: conv + BN (+ ReLU), squeeze-and-excitation.

Each has named parts (``conv``, ``bn``, ``act``) so a state-dict key says what it is, and a
``causal`` option: a causal layer never lets frame t see frames after t, which is what a
streaming model (one frame in, one prediction out) needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sevnet.errors import ConfigError

Triple = tuple[int, int, int]


class ConvBN(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> optional ReLU; padding keeps the size at stride 1.

    With ``causal=True`` the temporal padding is all on the left (k_t - 1 frames before the
    first frame, none after the last), so output frame t depends on input frames <= t.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple,
        stride: Triple = (1, 1, 1),
        groups: int = 1,
        relu: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__()
        kt, kh, kw = kernel
        self.causal_pad = kt - 1 if causal else 0
        padding = (0 if causal else kt // 2, kh // 2, kw // 2)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups,
                              bias=False)  # fmt: skip
        self.bn = nn.BatchNorm3d(out_channels)
        self.act: nn.Module = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.causal_pad:
            x = F.pad(x, (0, 0, 0, 0, self.causal_pad, 0))
        return self.act(self.bn(self.conv(x)))


class SpatialAvgPool(nn.AvgPool3d):
    """Average pooling over 1 x s x s that keeps a channels_last_3d input channels-last.

    Why: ``avg_pool3d`` on CPU returns (and back-propagates) NCDHW whatever its input, and one
    NCDHW gradient meeting channels-last activations makes every later elementwise backward op
    (ReLU, BN, the residual add) take a strided path about 10x slower; with it, channels-last CPU
    training was slower than NCDHW. On a channels-last input the pool runs as ``avg_pool2d`` on the
    (N*T, C, H, W) view of the same memory, whose kernel keeps the layout. Same numbers either way.
    """

    def __init__(self, stride: int) -> None:
        super().__init__((1, stride, stride), ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        if not _channels_last(x):
            return super().forward(x)
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)  # a view: (N, T) are the outer dims in memory
        y = F.avg_pool2d(frames, self.kernel_size[1:], self.stride[1:], ceil_mode=True)
        return y.reshape(n, t, c, *y.shape[-2:]).transpose(1, 2)


def _channels_last(x: Tensor) -> bool:
    """Channels-last in memory and not also plain contiguous (as a 1x1x1 map is both)."""
    return x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)


def global_mean(x: Tensor) -> Tensor:
    """Mean over (T, H, W) -> (N, C, 1, 1, 1), whose gradient has the input's memory layout.

    Why: the backward of ``x.mean((2, 3, 4))`` and of ``adaptive_avg_pool3d(x, 1)`` expands the
    (N, C) gradient into a new NCDHW tensor whatever the input's layout. How far that NCDHW gradient
    spreads then depends on the kernels behind it: on one CPU thread every later ReLU/BN/conv backward
    kept it, so a channels-last model trained entirely in the slow mixed-layout path; on CUDA, each
    conv backward copies it back. On a channels-last input the mean runs over the (N, T, H, W, C) view
    of the same memory, whose backward expands into that order, i.e. channels-last. Same numbers.
    """
    if not _channels_last(x):
        return x.mean(dim=(2, 3, 4), keepdim=True)
    n, c = x.shape[:2]
    return x.permute(0, 2, 3, 4, 1).mean(dim=(1, 2, 3)).view(n, c, 1, 1, 1)


class GlobalAvgPool(nn.AdaptiveAvgPool3d):
    """``AdaptiveAvgPool3d(1)`` computed by :func:`global_mean`, so that a channels-last network's
    gradients stay channels-last (a subclass: code that checks for a global average pool still sees one)."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: Tensor) -> Tensor:
        return global_mean(x) if x.dim() == 5 else super().forward(x)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): global pool -> FC -> ReLU -> FC -> sigmoid -> scale.

    The FCs are 1x1x1 convs so the unit exports to ONNX/OpenVINO as plain ops. With
    ``causal=True`` the pool is a running mean over time (frame t pools frames 0..t), so the
    unit stays causal.
    """

    def __init__(self, channels: int, ratio: float, causal: bool = False) -> None:
        super().__init__()
        hidden = max(8, round(channels * ratio))
        self.causal = causal
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def pool(self, x: Tensor) -> Tensor:
        if not self.causal:
            return global_mean(x)
        per_frame = x.mean(dim=(3, 4), keepdim=True)
        counts = torch.arange(1, x.shape[2] + 1, device=x.device, dtype=x.dtype).view(1, 1, -1, 1, 1)
        return per_frame.cumsum(dim=2) / counts

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * scale


class MotionCorrelation(nn.Module):
    """Where did each feature go since the previous frame? A residual unit that correlates every
    position's key features (a 1x1x1 projection) with the previous frame's at each displacement
    within +-``radius`` (CorrNet, Wang et al. 2020; MotionSqueeze, Kwon et al. 2020), then projects
    the ``(2r+1)^2`` similarities back to the stage width and adds them.

    Why: a kx1x1 temporal conv compares a position with itself over time, so it sees that something
    changed there, not where it went; the direction of a motion (left or right, clockwise or not)
    must then be learned as space-time filters, which a short schedule on a few hundred clips did
    not do reliably. The correlation states it outright, at a few MMACs. Causal by construction
    (frame t against t-1, zeros before the first frame): a stream keeps one frame of keys.
    """

    def __init__(self, channels: int, key_channels: int = 16, radius: int = 2) -> None:
        super().__init__()
        if radius < 1 or key_channels < 1:
            raise ConfigError(f"radius and key_channels must be >= 1, got {radius}, {key_channels}")
        self.radius = radius
        self.key = ConvBN(channels, key_channels, (1, 1, 1), relu=False)
        self.proj = ConvBN((2 * radius + 1) ** 2, channels, (1, 1, 1), relu=False)

    def forward(self, x: Tensor) -> Tensor:
        key = self.key(x)
        previous = F.pad(key, (0, 0, 0, 0, 1, 0))[:, :, :-1]  # frame t-1 at t; zeros before the first
        return x + self.proj(local_correlation(key, previous, self.radius))

    def macs(self, x_shape: tuple[int, ...]) -> int:
        """Multiply-adds of the correlation itself (the convs are counted as convs)."""
        n, _, t, h, w = x_shape
        return n * t * h * w * self.key.conv.out_channels * (2 * self.radius + 1) ** 2


def local_correlation(key: Tensor, previous: Tensor, radius: int) -> Tensor:
    """``out[:, d, t, y, x] = mean_c key[:, c, t, y, x] * previous[:, c, t, y + dy, x + dx]`` for the
    displacements ``d = (dy, dx)`` in ``[-r, r]^2``, row-major; zero outside the frame.

    (N, C, T, H, W) twice -> (N, (2r+1)^2, T, H, W), channels-last in memory (what the next 1x1x1
    conv reads fastest). Computed as one batched matmul per ``dy``: every key of a row against every
    previous key of the row ``dy`` away, (W, C) @ (C, W + 2r), of which the band ``x + dx`` is kept.
    That does (W + 2r) / (2r + 1) times the multiply-adds of a loop over displacements, but as GEMMs:
    about 2x faster on the CPU than (2r+1)^2 elementwise products and reductions.
    """
    n, c, t, h, w = key.shape
    size = 2 * radius + 1
    rows = key.permute(0, 2, 3, 4, 1)  # (N, T, H, W, C): a view of channels-last memory
    padded = F.pad(previous, (radius, radius, radius, radius)).permute(0, 2, 3, 4, 1)  # (N, T, H+2r, W+2r, C)
    bands = []
    for dy in range(size):
        pairs = torch.matmul(rows, padded[:, :, dy : dy + h].transpose(-1, -2))  # (N, T, H, W, W + 2r)
        bands.append(_band(pairs, size))
    out = torch.stack(bands, 4).reshape(n, t, h, w, size * size) / c
    return out.permute(0, 4, 1, 2, 3)


def _band(pairs: Tensor, size: int) -> Tensor:
    """``pairs[..., x, x + d]`` for d < ``size``: (..., W, W + size - 1) -> (..., W, size).

    The skew trick: row x of the flattened matrix read with a row length one longer starts x
    places further right. Plain pad / reshape / slice, so ONNX export keeps every size dynamic
    (an ``as_strided`` view exports with the example's sizes baked into its indices).
    """
    w, length = pairs.shape[-2:]
    flat = F.pad(pairs.flatten(-2), (0, w))  # W * (L + 1) values
    return flat.unflatten(-1, (w, length + 1))[..., :size]

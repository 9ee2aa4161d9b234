"""Residual blocks that plug into the SEVNet skeleton.

Every block maps ``in_channels -> out_channels`` through ``mid_channels`` (the bottleneck width),
optionally halving H and W (``spatial_stride=2``), and adds a shortcut. The three kinds are the
SEV module (the paper's block) and the two ablation blocks of the paper's Figure 4; they share
one signature, so the network skeleton takes the block kind as a parameter (as torchvision's
``VideoResNet`` does with its conv builders). Block-specific options (e.g. the SEV module's
``group_width``) reach the block through the skeleton's ``block_args``, as in timm.

Each block names its parts in the order ``forward`` calls them and owns ``zero_init_last()``.
"""

from __future__ import annotations

from torch import Tensor, nn

from sevnet.errors import ConfigError

from .layers import ConvBN, SpatialAvgPool, SqueezeExcite


class Shortcut(nn.Module):
    """Identity when shapes match; else average pooling (when downsampling) then 1x1x1 conv + BN.

    The paper's downsampling module uses pooling + 1x1x1 conv rather than a strided 1x1x1 conv,
    which would discard three out of four positions. ``ceil_mode`` makes the pooled size equal
    the strided 3x3 conv's output, ceil(H / 2), for odd H and W too.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_stride: int) -> None:
        super().__init__()
        self.pool: nn.Module = SpatialAvgPool(spatial_stride) if spatial_stride > 1 else nn.Identity()
        self.proj: nn.Module = (
            ConvBN(in_channels, out_channels, (1, 1, 1), relu=False)
            if in_channels != out_channels or spatial_stride > 1
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.pool(x))


def resolve_group_width(group_width: int | str, channels: int) -> int:
    """``"depthwise"`` -> 1, ``"dense"`` -> channels, an int -> itself (checked to divide)."""
    if group_width == "depthwise":
        return 1
    if group_width == "dense":
        return channels
    if not isinstance(group_width, int) or group_width < 1:
        raise ConfigError(f"group_width must be a positive int, 'depthwise' or 'dense', got {group_width!r}")
    if channels % group_width:
        raise ConfigError(f"group_width={group_width} does not divide the {channels} channels of the conv")
    return group_width


def _check_odd(**kernels: int) -> None:
    for name, k in kernels.items():
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"{name} must be a positive odd int, got {k}")


def _squeeze_excite(channels: int, se_ratio: float, causal: bool) -> nn.Module:
    return SqueezeExcite(channels, se_ratio, causal=causal) if se_ratio > 0 else nn.Identity()


class ResidualBlock(nn.Module):
    """Base: a residual function ``residual(x)`` + shortcut, then ReLU (ResNet bottleneck style)."""

    last_name: str = "temporal"  # the conv + BN whose output is added to the shortcut

    def __init__(self, in_channels: int, out_channels: int, spatial_stride: int) -> None:
        super().__init__()
        if spatial_stride not in (1, 2):
            raise ConfigError(f"spatial_stride must be 1 or 2, got {spatial_stride}")
        self.shortcut = Shortcut(in_channels, out_channels, spatial_stride)
        self.act = nn.ReLU(inplace=True)

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.residual(x) + self.shortcut(x))

    def zero_init_last(self) -> None:
        """Zero the last BN's scale so the block starts as its shortcut (Goyal et al., 2017)."""
        last: ConvBN = getattr(self, self.last_name)
        nn.init.zeros_(last.bn.weight)


class SEVModule(ResidualBlock):
    """The SEV module: channel-wise 1x1x1 -> spatial-grouped 1x3x3 -> temporal 3x1x1, residual.

    Args:
        mid_channels: bottleneck width (output of the channel-wise conv).
        group_width: channels per group of the spatial conv: 1 (``"depthwise"``) up to
            mid_channels (``"dense"``).
        temporal_kernel: temporal extent of the temporal conv (3 in the paper; 1 removes it).
        spatial_kernel_t: temporal extent of the spatial-grouped conv (1 by default; 3 gives the
            3x3x3 reading of the paper, kept as an ablation knob).
        temporal_conv: ``"dense"`` or ``"grouped"`` (grouped with the same groups as the spatial
            conv, which requires out_channels to be divisible by the group count).
        se_ratio: squeeze-and-excitation after the spatial conv, hidden = ratio * mid; 0 = off.
        causal: temporal padding on the left only (a streaming model); SE pools causally.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        spatial_stride: int = 1,
        *,
        group_width: int | str = 8,
        temporal_kernel: int = 3,
        spatial_kernel_t: int = 1,
        temporal_conv: str = "dense",
        se_ratio: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_stride)
        _check_odd(temporal_kernel=temporal_kernel, spatial_kernel_t=spatial_kernel_t)
        groups = mid_channels // resolve_group_width(group_width, mid_channels)
        if temporal_conv not in ("dense", "grouped"):
            raise ConfigError(f"temporal_conv must be 'dense' or 'grouped', got {temporal_conv!r}")
        if temporal_conv == "grouped" and out_channels % groups:
            raise ConfigError(f"temporal_conv='grouped' needs out_channels={out_channels} divisible by the "
                             f"{groups} groups of group_width={group_width}")  # fmt: skip
        stride = (1, spatial_stride, spatial_stride)
        self.channel = ConvBN(in_channels, mid_channels, (1, 1, 1))
        self.spatial = ConvBN(mid_channels, mid_channels, (spatial_kernel_t, 3, 3), stride, groups, causal=causal)
        self.se = _squeeze_excite(mid_channels, se_ratio, causal)
        t_groups = groups if temporal_conv == "grouped" else 1
        self.temporal = ConvBN(mid_channels, out_channels, (temporal_kernel, 1, 1), groups=t_groups, relu=False,
                               causal=causal)  # fmt: skip

    def residual(self, x: Tensor) -> Tensor:
        return self.temporal(self.se(self.spatial(self.channel(x))))


class R2Plus1DLikeBlock(ResidualBlock):
    """Ablation (paper Fig. 4): dense 1x3x3 (in -> mid) then dense 3x1x1 (mid -> out)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        spatial_stride: int = 1,
        *,
        temporal_kernel: int = 3,
        se_ratio: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_stride)
        _check_odd(temporal_kernel=temporal_kernel)
        self.spatial = ConvBN(in_channels, mid_channels, (1, 3, 3), stride=(1, spatial_stride, spatial_stride))
        self.se = _squeeze_excite(mid_channels, se_ratio, causal)
        self.temporal = ConvBN(mid_channels, out_channels, (temporal_kernel, 1, 1), relu=False, causal=causal)

    def residual(self, x: Tensor) -> Tensor:
        return self.temporal(self.se(self.spatial(x)))


class R3DLikeBlock(ResidualBlock):
    """Ablation (paper Fig. 4): one dense 3x3x3 conv (in -> mid) then 1x1x1 (mid -> out).

    The 1x1x1 restores the stage width so the block fits the same skeleton and stage table.
    """

    last_name = "channel"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        spatial_stride: int = 1,
        *,
        temporal_kernel: int = 3,
        se_ratio: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_stride)
        _check_odd(temporal_kernel=temporal_kernel)
        stride = (1, spatial_stride, spatial_stride)
        self.spacetime = ConvBN(in_channels, mid_channels, (temporal_kernel, 3, 3), stride, causal=causal)
        self.se = _squeeze_excite(mid_channels, se_ratio, causal)
        self.channel = ConvBN(mid_channels, out_channels, (1, 1, 1), relu=False)

    def residual(self, x: Tensor) -> Tensor:
        return self.channel(self.se(self.spacetime(x)))


BLOCKS: dict[str, type[ResidualBlock]] = {
    "sev": SEVModule,
    "r2plus1d": R2Plus1DLikeBlock,
    "r3d": R3DLikeBlock,
}

"""SEVNet: one skeleton (stem, four stages, head), a stage table per size, pluggable blocks.

A size is one entry of ``SIZES``; changing a width or a depth is editing a row. Widths were
chosen so each size lands in the GFLOPs band of its X3D rival at its reference input (see
docs/architecture.md for the table, the reasoning and the measured figures).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sevnet.errors import ConfigError

from .blocks import BLOCKS, ResidualBlock
from .layers import ConvBN, GlobalAvgPool, MotionCorrelation
from .registry import register_model


@dataclass(frozen=True)
class Stage:
    """One stage: ``depth`` blocks; the first halves H and W and changes the width."""

    out_channels: int
    mid_channels: int
    depth: int


@dataclass(frozen=True)
class SEVNetConfig:
    """Everything that defines a SEVNet; ``create_model`` overrides any field by keyword.

    Keywords that are not fields here (e.g. ``group_width`` of the SEV module) go to the block
    through ``block_args`` and are checked against the block's signature.
    """

    stages: tuple[Stage, ...]
    stem_channels: int = 24
    stem_temporal_kernel: int = 1  # a dense kx1x1 conv after the spatial stem conv; 1 = none
    stem_kernel: int = 3  # spatial kernel of the stem conv (1xkxk, stride 2)
    stem_temporal_init: str = "he"  # "he" | "difference": two thirds of its channels start as frame differences
    head_channels: int = 432
    block: str = "sev"
    block_args: dict[str, Any] = field(default_factory=dict)  # block-specific keywords (timm's block_args)
    temporal_kernel: int = 3
    se_ratio: float = 0.0
    causal: bool = False  # time mixed from the past only: a model that can stream (sevnet.streaming)
    motion_stages: tuple[int, ...] = ()  # stages (1-4) that end with a MotionCorrelation unit
    motion_radius: int = 2  # its displacements: +-radius positions at that stage's resolution
    zero_init_last: bool = True  # each block starts as its shortcut (Goyal et al.)
    dropout: float = 0.5
    num_classes: int = 400
    reference_input: tuple[int, int, int] = (16, 160, 160)  # T, H, W used for the FLOPs figure


# The stage tables (out_channels, mid_channels, depth); reasoning and measurements in docs/architecture.md.
SIZES: dict[str, SEVNetConfig] = {
    "xs": SEVNetConfig(
        stages=(Stage(48, 24, 2), Stage(96, 48, 3), Stage(192, 96, 4), Stage(384, 192, 2)),
        stem_channels=24,
        head_channels=432,
        reference_input=(8, 112, 112),
    ),
    "s": SEVNetConfig(
        stages=(Stage(48, 24, 2), Stage(96, 48, 3), Stage(192, 96, 5), Stage(384, 192, 2)),
        stem_channels=24,
        head_channels=512,
        reference_input=(16, 160, 160),
    ),
    "m": SEVNetConfig(
        stages=(Stage(48, 24, 2), Stage(96, 48, 4), Stage(192, 96, 8), Stage(384, 192, 3)),
        stem_channels=24,
        head_channels=512,
        reference_input=(16, 224, 224),
    ),
    "l": SEVNetConfig(
        stages=(Stage(80, 40, 3), Stage(160, 80, 5), Stage(320, 160, 11), Stage(640, 320, 4)),
        stem_channels=32,
        head_channels=1024,
        reference_input=(16, 224, 224),
    ),
}


class Stem(nn.Module):
    """A strided 1xkxk conv, then optionally a dense kx1x1 temporal conv at the stem's resolution.

    A temporal conv can tell a direction of motion only where the displacement between its frames
    fits inside its receptive field; a wider spatial kernel (5) widens the stem's (one source frame
    of a 24-frame video sampled to 8 moves a sprite several pixels).
    """

    def __init__(self, channels: int, temporal_kernel: int, causal: bool, kernel: int = 3) -> None:
        super().__init__()
        for name, k in (("stem_temporal_kernel", temporal_kernel), ("stem_kernel", kernel)):
            if k < 1 or k % 2 == 0:
                raise ConfigError(f"{name} must be a positive odd int, got {k}")
        self.spatial = ConvBN(3, channels, (1, kernel, kernel), stride=(1, 2, 2))
        self.temporal: nn.Module = (
            ConvBN(channels, channels, (temporal_kernel, 1, 1), causal=causal) if temporal_kernel > 1 else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(self.spatial(x))


class SEVNet(nn.Module):
    """Stem -> 4 stages of residual blocks -> 1x1x1 expansion -> pool -> dropout -> FC.

    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)``. Time is never strided, so any
    T >= 1 works; H and W need not be multiples of 32.
    """

    def __init__(self, cfg: SEVNetConfig) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        self.stem = Stem(cfg.stem_channels, cfg.stem_temporal_kernel, cfg.causal, cfg.stem_kernel)
        self.stages = self._make_stages(cfg)
        self.head_conv = ConvBN(cfg.stages[-1].out_channels, cfg.head_channels, (1, 1, 1))
        self.pool = GlobalAvgPool()
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.head_channels, cfg.num_classes)
        self.init_weights()

    @staticmethod
    def _make_stages(cfg: SEVNetConfig) -> nn.Sequential:
        block_cls = BLOCKS[cfg.block]
        kwargs = {"temporal_kernel": cfg.temporal_kernel, "se_ratio": cfg.se_ratio, "causal": cfg.causal}
        stages, in_ch = [], cfg.stem_channels
        for i, stage in enumerate(cfg.stages):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for j in range(stage.depth):
                stride = 2 if j == 0 else 1
                try:
                    blocks[str(j)] = block_cls(in_ch, stage.out_channels, stage.mid_channels, stride,
                                               **kwargs, **cfg.block_args)  # fmt: skip
                except ValueError as err:
                    raise ConfigError(f"stage {i + 1} (mid_channels={stage.mid_channels}): {err}") from None
                in_ch = stage.out_channels
            if i + 1 in cfg.motion_stages:
                blocks["motion"] = MotionCorrelation(stage.out_channels, radius=cfg.motion_radius)
            stages.append(nn.Sequential(blocks))
        return nn.Sequential(*stages)

    def init_weights(self) -> None:
        """He init for convs, small normal for the classifier; optionally zero each block's last BN."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        if self.cfg.stem_temporal_init == "difference" and isinstance(self.stem.temporal, ConvBN):
            difference_init(self.stem.temporal.conv, self.cfg.causal)
        if self.cfg.zero_init_last:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    m.zero_init_last()

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features before dropout and the classifier, ``(N, head_channels)``."""
        x = self.head_conv(self.stages(self.stem(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape (N, 3, T, H, W), got {tuple(x.shape)}")
        return self.fc(self.dropout(self.forward_features(x)))


def difference_init(conv: nn.Conv3d, causal: bool) -> None:
    """Start a kx1x1 temporal conv as a motion detector: each output channel is a random (He) mix of
    the input channels, taken from the current frame (a third of the outputs) or from the change
    since the previous frame (current - previous; two thirds, the mix's random sign gives both
    polarities).

    With He-random taps every output mixes mostly the static picture, and the BN after it scales
    that up; when classes differ only in motion (the order of the frames), a network then sits at
    chance for hundreds of steps before it finds the motion. Differences cancel the static picture,
    so the BN scales the motion up instead, from the first step. Learned freely afterwards.
    """
    c_out, c_in, k = conv.weight.shape[:3]
    mix = torch.empty(c_out, c_in)
    nn.init.kaiming_normal_(mix, mode="fan_out", nonlinearity="relu")
    now = k - 1 if causal else k // 2  # the tap that sees frame t
    taps = torch.zeros(c_out, k)
    taps[:, now] = 1.0
    taps[torch.arange(c_out) % 3 != 0, now - 1] = -1.0
    with torch.no_grad():
        conv.weight.copy_((mix[:, :, None] * taps[:, None, :])[..., None, None])


def _check_config(cfg: SEVNetConfig) -> None:
    if cfg.stem_temporal_init not in ("he", "difference"):
        raise ConfigError(f"stem_temporal_init must be 'he' or 'difference', got {cfg.stem_temporal_init!r}")
    if not all(isinstance(i, int) and 1 <= i <= len(cfg.stages) for i in cfg.motion_stages):
        raise ConfigError(f"motion_stages must be stage numbers 1-{len(cfg.stages)}, got {list(cfg.motion_stages)}")
    if cfg.block not in BLOCKS:
        raise ConfigError(f"block must be one of {sorted(BLOCKS)}, got {cfg.block!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {cfg.num_classes}")
    accepted = set(inspect.signature(BLOCKS[cfg.block]).parameters) - _SKELETON_ARGS
    unknown = sorted(set(cfg.block_args) - accepted)
    if unknown:
        raise ConfigError(f"{unknown} not accepted by block={cfg.block!r} ({BLOCKS[cfg.block].__name__}); "
                         f"its options: {sorted(accepted)}")  # fmt: skip


# Arguments the skeleton passes to every block itself (not block_args).
_SKELETON_ARGS = {"in_channels", "out_channels", "mid_channels", "spatial_stride", "temporal_kernel", "se_ratio",
                  "causal"}  # fmt: skip


def build_sevnet(size: str, **overrides: Any) -> SEVNet:
    """Build SEVNet of ``size`` ('xs', 's', 'm', 'l'), overriding any ``SEVNetConfig`` field.

    ``depths`` (one int per stage) keeps the size's widths and changes only how many blocks each
    stage has, e.g. the own-videos recipe's lighter XS, ``depths=[1, 2, 2, 1]``. Other keywords
    (e.g. ``group_width``) are block options and go to ``block_args``.
    """
    if size not in SIZES:
        raise ConfigError(f"unknown SEVNet size {size!r}; known: {sorted(SIZES)}")
    if "depths" in overrides:
        overrides["stages"] = _with_depths(overrides.get("stages", SIZES[size].stages), overrides.pop("depths"))
    fields = {f.name for f in dataclasses.fields(SEVNetConfig)}
    block_args = dict(overrides.pop("block_args", {}))
    block_args |= {k: overrides.pop(k) for k in list(overrides) if k not in fields}
    if "motion_stages" in overrides:  # a list from YAML
        overrides["motion_stages"] = tuple(overrides["motion_stages"])
    if "stages" in overrides:
        overrides["stages"] = tuple(s if isinstance(s, Stage) else Stage(*s) for s in overrides["stages"])
    cfg = dataclasses.replace(SIZES[size], **overrides)
    if block_args:
        cfg = dataclasses.replace(cfg, block_args={**cfg.block_args, **block_args})
    return SEVNet(cfg)


for _size, _cfg in SIZES.items():
    register_model(
        f"sevnet_{_size}",
        family="sevnet",
        reference_input=_cfg.reference_input,
        builder=lambda size=_size, **kw: build_sevnet(size, **kw),
        description=f"SEVNet-{_size.upper()}",
    )


# Options whose default may change between versions: checkpoints record their value so that a
# model always rebuilds as it was trained (format 1 lacked this; see models.compat).
RECORDED_OPTIONS = ("stem_temporal_kernel", "zero_init_last")


def recorded_defaults(model_name: str) -> dict[str, Any]:
    """The current default of each ``RECORDED_OPTIONS`` entry for ``sevnet_<size>``, else {}."""
    size = model_name.removeprefix("sevnet_")
    if not model_name.startswith("sevnet_") or size not in SIZES:
        return {}
    return {k: getattr(SIZES[size], k) for k in RECORDED_OPTIONS}


def _with_depths(stages: Any, depths: Any) -> tuple[Stage, ...]:
    rows = [s if isinstance(s, Stage) else Stage(*s) for s in stages]
    if (
        not isinstance(depths, (list, tuple))
        or len(depths) != len(rows)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths)
    ):
        raise ConfigError(f"depths must be {len(rows)} positive ints (one per stage), got {depths!r}")
    return tuple(dataclasses.replace(row, depth=d) for row, d in zip(rows, depths, strict=True))

"""SEVNet: one skeleton (stem, four stages, head), a stage table per size, pluggable blocks.

A size is one entry of ``SIZES``; changing a width or a depth is editing a row. Widths were
chosen so each size lands in the GFLOPs band of its X3D rival at its reference input (see
docs/architecture.md for the table, the reasoning and the measured figures).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .blocks import BLOCKS, SEVModule
from .layers import ConvBN
from .registry import register_model


@dataclass(frozen=True)
class Stage:
    """One stage: ``depth`` blocks; the first halves H and W and changes the width."""

    out_channels: int
    mid_channels: int
    depth: int


@dataclass(frozen=True)
class SEVNetConfig:
    """Everything that defines a SEVNet; ``create_model`` overrides any field by keyword."""

    stages: tuple[Stage, ...]
    stem_channels: int = 24
    head_channels: int = 432
    block: str = "sev"
    group_width: int | str = 8
    temporal_kernel: int = 3
    spatial_kernel_t: int = 1
    temporal_conv: str = "dense"
    se_ratio: float = 0.0
    dropout: float = 0.5
    num_classes: int = 400
    reference_input: tuple[int, int, int] = (16, 160, 160)  # T, H, W used for the FLOPs figure
    extra: dict = field(default_factory=dict, compare=False)


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

_SEV_ONLY = ("group_width", "spatial_kernel_t", "temporal_conv")


class SEVNet(nn.Module):
    """Stem (1x3x3, stride 2) -> 4 stages -> 1x1x1 expansion -> pool -> FC.

    Input ``(N, 3, T, H, W)``; output logits ``(N, num_classes)``. Time is never strided, so any
    T >= 1 works; H and W need not be multiples of 32.
    """

    def __init__(self, cfg: SEVNetConfig) -> None:
        super().__init__()
        if cfg.block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {cfg.block!r}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {cfg.num_classes}")
        self.cfg = cfg
        c0 = cfg.stem_channels
        # A spatial-only stem: a temporal conv at this resolution (X3D's depthwise 3x1x1) cost
        # a quarter of SEVNet-S's CPU latency for <1% of its FLOPs; the blocks model time.
        self.stem = ConvBN(3, c0, (1, 3, 3), stride=(1, 2, 2))
        block_cls = BLOCKS[cfg.block]
        block_kwargs: dict = {"temporal_kernel": cfg.temporal_kernel, "se_ratio": cfg.se_ratio}
        if block_cls is SEVModule:
            block_kwargs |= {k: getattr(cfg, k) for k in _SEV_ONLY}
        stages = []
        in_ch = c0
        for i, stage in enumerate(cfg.stages):
            blocks = []
            for j in range(stage.depth):
                try:
                    blocks.append(
                        block_cls(in_ch, stage.out_channels, stage.mid_channels, 2 if j == 0 else 1, **block_kwargs)
                    )
                except ValueError as err:
                    raise ValueError(f"stage {i + 1} (mid_channels={stage.mid_channels}): {err}") from None
                in_ch = stage.out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head_conv = ConvBN(in_ch, cfg.head_channels, (1, 1, 1))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.head_channels, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
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
        # Zero the last BN of each residual body so every block starts as an identity: helps
        # from-scratch training (Goyal et al., "Accurate, Large Minibatch SGD").
        for stage in self.stages:
            for block in stage:
                last_bn = block.body[-1][1]
                nn.init.zeros_(last_bn.weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features before dropout and the classifier, ``(N, head_channels)``."""
        x = self.head_conv(self.stages(self.stem(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape (N, 3, T, H, W), got {tuple(x.shape)}")
        return self.fc(self.dropout(self.forward_features(x)))


def build_sevnet(size: str, **overrides: object) -> SEVNet:
    """Build SEVNet of ``size`` ('xs', 's', 'm', 'l'), overriding any ``SEVNetConfig`` field."""
    if size not in SIZES:
        raise ValueError(f"unknown SEVNet size {size!r}; known: {sorted(SIZES)}")
    base = SIZES[size]
    known = {f.name for f in dataclasses.fields(SEVNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown argument(s) for sevnet_{size}: {unknown}; valid: {sorted(known)}")
    if "stages" in overrides:
        overrides["stages"] = tuple(s if isinstance(s, Stage) else Stage(*s) for s in overrides["stages"])
    cfg = dataclasses.replace(base, **overrides)
    if cfg.block != "sev":
        changed = [k for k in _SEV_ONLY if getattr(cfg, k) != getattr(base, k)]
        if changed:
            raise ValueError(f"{changed} only apply to block='sev', not block={cfg.block!r}")
    return SEVNet(cfg)


for _size, _cfg in SIZES.items():
    register_model(
        f"sevnet_{_size}",
        family="sevnet",
        reference_input=_cfg.reference_input,
        builder=lambda size=_size, **kw: build_sevnet(size, **kw),
        description=f"SEVNet-{_size.upper()}",
    )

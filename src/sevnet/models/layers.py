"""Small layers shared by every block: conv + BN (+ ReLU), squeeze-and-excitation."""

from __future__ import annotations

from torch import Tensor, nn

Triple = tuple[int, int, int]


def _same_padding(kernel: Triple) -> Triple:
    return (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)


class ConvBN(nn.Sequential):
    """Conv3d (no bias) -> BatchNorm3d -> optional ReLU. Padding keeps size at stride 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple,
        stride: Triple = (1, 1, 1),
        groups: int = 1,
        relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv3d(
                in_channels,
                out_channels,
                kernel,
                stride=stride,
                padding=_same_padding(kernel),
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm3d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): global pool -> FC -> ReLU -> FC -> sigmoid -> scale.

    The FCs are 1x1x1 convs so the unit exports to ONNX/OpenVINO as plain ops.
    """

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = max(8, round(channels * ratio))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * scale

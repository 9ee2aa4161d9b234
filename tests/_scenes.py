"""Test media and models for inference: videos made of coloured scenes, a stub model that names a
clip's dominant colour, and a tiny real SEVNet checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from _videos import write_video
from torch import nn

import sevnet
from sevnet.engine.checkpoint import save_checkpoint

COLOURS = ("red", "green", "blue")
STAGES = [[16, 8, 1], [32, 16, 1], [32, 16, 1], [64, 32, 1]]


def scene_frames(colour: int, count: int, start: int = 0, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Frames dominated by one colour channel, with a moving bright square so that frames differ."""
    h, w = size
    out = []
    for t in range(start, start + count):
        img = np.full((h, w, 3), 40, np.uint8)
        img[..., colour] = 200
        x = (3 * t) % (w - 10)
        img[10:20, x : x + 10] = 255
        out.append(img)
    return out


def scenes_video(path: Path, seconds: tuple[float, ...], fps: int = 10, size: tuple[int, int] = (48, 64)) -> Path:
    """Scene k (colour k % 3) lasts ``seconds[k]``; returns the encoded file."""
    frames: list[np.ndarray] = []
    for k, s in enumerate(seconds):
        frames += scene_frames(k % 3, round(s * fps), len(frames), size)
    return write_video(path, frames=frames, size=size, fps=fps)


class ColourStub(nn.Module):
    """Logits = scale x mean of each input channel: class k = 'channel k dominates' (red/green/blue)."""

    def __init__(self, scale: float = 8.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.scale * clips.mean(dim=(2, 3, 4))


def meta_for(num_frames: int = 8, sampling: str = "segment", crop: int = 32, classes=COLOURS) -> dict:
    return {
        "model": "sevnet_xs",
        "model_overrides": {"stages": STAGES, "head_channels": 64},
        "num_classes": len(classes),
        "class_names": list(classes),
        "multi_label": False,
        "data": {"num_frames": num_frames, "sampling": sampling, "frame_stride": 2, "eval_scale": crop,
                 "eval_crop": crop, "mean": [0.45] * 3, "std": [0.225] * 3, "frame_template": "{:05d}.jpg"},
    }  # fmt: skip


def tiny_checkpoint(path: Path, seed: int = 0, **meta_options: object) -> Path:
    """A randomly initialised tiny SEVNet with a sharpened classifier (its scores are far from
    uniform, so comparisons between inputs and backends mean something)."""
    torch.manual_seed(seed)
    model = sevnet.create_model("sevnet_xs", num_classes=3, stages=STAGES, head_channels=64)
    with torch.no_grad():
        model.fc.weight.mul_(40.0)
    return save_checkpoint(path, model, meta_for(**meta_options))

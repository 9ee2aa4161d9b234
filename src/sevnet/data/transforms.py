"""Clip transforms built on torchvision.transforms.v2 (the same random crop for every frame)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .config import DataConfig


def _three_crops(video: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Left/centre/right (or top/centre/bottom) crops along the long side: the 3-crop test view."""
    h, w = video.shape[-2:]
    if w >= h:
        tops, lefts = [(h - size) // 2] * 3, [0, (w - size) // 2, w - size]
    else:
        tops, lefts = [0, (h - size) // 2, h - size], [(w - size) // 2] * 3
    return [F.crop(video, top, left, size, size) for top, left in zip(tops, lefts)]


def build_transform(train: bool, cfg: DataConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 frames (T, H, W, 3) -> float (3, T, H, W) in training, (V, 3, T, H, W) in evaluation
    where V = eval_crops spatial views (temporal views are stacked by the dataset)."""
    normalize = v2.Normalize(mean=list(cfg.mean), std=list(cfg.std))
    if train:
        lo, hi = cfg.train_scale
        steps: list[Callable] = [
            v2.RandomShortestSize(min_size=list(range(lo, hi + 1)), antialias=True),
            v2.RandomCrop(cfg.train_crop, pad_if_needed=True),
        ]
        if cfg.flip:
            steps.append(v2.RandomHorizontalFlip())
        pipeline = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), normalize])

        def train_tf(frames: torch.Tensor) -> torch.Tensor:
            video = tv_tensors.Video(frames.permute(0, 3, 1, 2))
            return pipeline(video).as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()

        return train_tf

    resize = v2.Resize(max(cfg.eval_scale, cfg.eval_crop), antialias=True)
    post = v2.Compose([v2.ToDtype(torch.float32, scale=True), normalize])

    def eval_tf(frames: torch.Tensor) -> torch.Tensor:
        video = resize(frames.permute(0, 3, 1, 2))
        if cfg.eval_crops == 3:
            views = _three_crops(video, cfg.eval_crop)
        else:
            views = [F.center_crop(video, [cfg.eval_crop, cfg.eval_crop])]
        return torch.stack([post(v).permute(1, 0, 2, 3) for v in views])

    return eval_tf

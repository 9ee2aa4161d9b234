"""Clip transforms on uint8 frames (the same random crop for every frame), then float normalisation.

The training transform is the v2 pipeline RandomShortestSize + RandomCrop(pad_if_needed) +
RandomHorizontalFlip + ToDtype + Normalize written out with the same kernels and the same draws
from the global RNG in the same order, without v2's per-call dispatch (tv_tensor wrapping, kernel
lookup, parameter checks), which cost more than the resize. One step is reordered: the crop is cut
from the source frame first (the window the resized crop would cover, rounded to whole pixels),
then resized to the crop size, so only the crop's pixels are resampled (half the work at a 182-px
short side and a 160 crop). Scale and position are the pipeline's to within half a source pixel; where no
resize is drawn, or the scale is below the crop (zero padding), the clip is the pipeline's bit for bit.
Normalisation is a separate step (``normalize_clips``) so that a training loader can ship uint8
clips (a quarter of the bytes) and normalise whole batches where they are used (``uint8_clips``
in ``VideoDataset``). Those uint8 training clips keep the resize's channels-last bytes, (T, H, W, 3)
behind a (3, T, H, W) view of the crop, and ``stack_clips`` batches them as such: the model trains
channels-last (``train.channels_last``), so no process transposes them (a transpose cost 0.6 ms a
clip), and the crop is copied once, into the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F

from .config import DataConfig, Flip


def normalize_clips(clips: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 clips (..., 3, T, H, W) -> float32 scaled to [0, 1], minus ``mean``, over ``std`` per channel.
    The element-wise operations of v2.ToDtype(scale=True) + v2.Normalize, so normalising a batch, on
    any device, gives the same values as normalising each clip in the loader."""
    shape = (-1, 1, 1, 1)  # channels, then T, H, W
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=clips.device).view(shape)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=clips.device).view(shape)
    return clips.to(torch.float32).mul_(1.0 / 255).sub_(mean_t).div_(std_t)


def _three_crops(video: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Left/centre/right (or top/centre/bottom) crops along the long side: the 3-crop test view."""
    h, w = video.shape[-2:]
    if w >= h:
        tops, lefts = [(h - size) // 2] * 3, [0, (w - size) // 2, w - size]
    else:
        tops, lefts = [0, (h - size) // 2, h - size], [(w - size) // 2] * 3
    return [F.crop(video, top, left, size, size) for top, left in zip(tops, lefts)]


def _random_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """v2.RandomCrop(size, pad_if_needed=True): zero padding on both sides of a side shorter than
    ``size``, then a random offset along each side longer than it (one draw each, top first)."""
    h, w = video.shape[-2:]
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    if pad_h or pad_w:
        video = F.pad(video, [pad_w, pad_h, pad_w, pad_h])  # left, top, right, bottom
        h, w = h + 2 * pad_h, w + 2 * pad_w
    top = int(torch.randint(0, h - size + 1, size=())) if h > size else 0
    left = int(torch.randint(0, w - size + 1, size=())) if w > size else 0
    return video[..., top : top + size, left : left + size]


def _resized_crop(frames: torch.Tensor, resized: tuple[int, int], size: int, pick: torch.Tensor | None) -> torch.Tensor:
    """RandomCrop(size) of (T, H, W, 3) ``frames`` resized to ``resized`` (same draws), computed as the
    source window that crop covers (start and extent rounded to whole pixels), frames ``pick`` of it,
    resized to ``size`` x ``size``: (T, 3, size, size), channels-last."""
    (h, w), (out_h, out_w) = frames.shape[1:3], resized
    top = int(torch.randint(0, out_h - size + 1, size=())) if out_h > size else 0
    left = int(torch.randint(0, out_w - size + 1, size=())) if out_w > size else 0
    rows, cols = round(size * h / out_h), round(size * w / out_w)
    y0, x0 = min(round(top * h / out_h), h - rows), min(round(left * w / out_w), w - cols)
    window = frames[:, y0 : y0 + rows, x0 : x0 + cols]
    window = window if pick is None else window.index_select(0, pick)  # copies the window's pixels only
    return F.resize(window.permute(0, 3, 1, 2), [size, size], antialias=True)


def _train_crop(cfg: DataConfig) -> Callable[..., torch.Tensor]:
    """uint8 (T, H, W, 3) -> uint8 (3, T, crop, crop): random short-side scale, random crop, flip. With
    ``pick`` (a tensor of frame positions), the clip of those frames: data.repeats cuts several clips
    from one decode, and selecting after the crop copies only the crop window."""
    lo, hi = cfg.train_scale
    # flip: auto is applied by the dataset, which knows the label to swap (VideoDataset.mirror)
    scales, size, flip = list(range(lo, hi + 1)), cfg.train_crop, cfg.flip == Flip.on

    def crop(frames: torch.Tensor, pick: torch.Tensor | None = None) -> torch.Tensor:
        h, w = frames.shape[1:3]
        ratio = scales[int(torch.randint(len(scales), ()))] / min(h, w)
        out_h, out_w = int(h * ratio), int(w * ratio)
        if (out_h, out_w) == (h, w) or min(out_h, out_w) < size:
            frames = frames if pick is None else frames.index_select(0, pick)
            video = frames.permute(0, 3, 1, 2)  # (T, 3, H, W) channels-last view: the fast uint8 resize
            video = _random_crop(F.resize(video, [out_h, out_w], antialias=True), size)
        else:
            video = _resized_crop(frames, (out_h, out_w), size, pick)
        if flip and bool(torch.rand(1) < 0.5):  # v2.RandomHorizontalFlip(p=0.5)'s draw and test
            video = video.flip(-1)
        # a (3, T, H, W) view of the crop, channels-last (the layout the model trains in): stack_clips
        # copies it into the batch, the crop's one copy
        return video.permute(1, 0, 2, 3)

    return crop


def is_channels_last(clip: torch.Tensor) -> bool:
    """Whether (..., 3, T, H, W) ``clip`` is laid out channels-last (channel stride 1): the training crop's
    layout, possibly a view of a larger frame."""
    return clip.dim() >= 4 and clip.size(-4) > 1 and clip.stride(-4) == 1


def flip_width(clip: torch.Tensor) -> torch.Tensor:
    """``clip`` flipped left-right, keeping a channels-last clip channels-last (``Tensor.flip`` would
    give a channels-last view of a crop back as (3, T, H, W) bytes)."""
    if is_channels_last(clip):
        return clip.movedim(-4, -1).flip(-2).movedim(-1, -4)
    return clip.flip(-1)


def flip_height(clip: torch.Tensor) -> torch.Tensor:
    """``clip`` flipped upside down, keeping a channels-last clip channels-last (as ``flip_width``)."""
    if is_channels_last(clip):
        return clip.movedim(-4, -1).flip(-3).movedim(-1, -4)
    return clip.flip(-2)


def stack_clips(clips: Sequence[torch.Tensor], shared: bool = False) -> torch.Tensor:
    """``torch.stack(clips)`` that keeps channels-last clips channels-last (a plain stack would transpose
    them to (N, 3, T, H, W) bytes), as dense (N, ..., T, H, W, 3) bytes; ``shared``: into shared memory,
    as ``default_collate`` does in a loader worker, so that the batch reaches the main process without
    another copy."""
    channels_last = any(is_channels_last(c) for c in clips)
    bases = [c.movedim(-4, -1) for c in clips] if channels_last else list(clips)
    out = None
    if shared:
        elem = bases[0]
        storage = elem._typed_storage()._new_shared(sum(b.numel() for b in bases), device=elem.device)
        out = elem.new(storage).resize_(len(bases), *elem.shape)
    batch = torch.stack(bases, out=out)
    return batch.movedim(-1, -4) if channels_last else batch


def _eval_views(cfg: DataConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (T, H, W, 3) -> uint8 (V, 3, T, crop, crop): resize, then 1 centre or 3 crops."""
    size = max(cfg.eval_scale, cfg.eval_crop)

    def views(frames: torch.Tensor) -> torch.Tensor:
        video = F.resize(frames.permute(0, 3, 1, 2), [size], antialias=True)
        if cfg.eval_crops == 3:
            crops = _three_crops(video, cfg.eval_crop)
        else:
            crops = [F.center_crop(video, [cfg.eval_crop, cfg.eval_crop])]
        return torch.stack([c.permute(1, 0, 2, 3) for c in crops])

    return views


def build_transform(train: bool, cfg: DataConfig, normalize: bool = True) -> Callable[..., torch.Tensor]:
    """uint8 frames (T, H, W, 3) -> (3, T, H, W) in training, (V, 3, T, H, W) in evaluation where
    V = eval_crops spatial views (temporal views are stacked by the dataset): normalised float,
    or with ``normalize=False`` uint8, to be normalised later by ``normalize_clips``. A training
    transform takes an optional second argument, the positions of the frames the clip takes."""
    geometric = _train_crop(cfg) if train else _eval_views(cfg)
    if not normalize:
        return geometric
    mean, std = list(cfg.mean), list(cfg.std)
    return lambda frames, *pick: normalize_clips(geometric(frames, *pick).contiguous(), mean, std)

"""Which frame indices make a clip.

* Segment (TSN) sampling, for Something-Something and FineGym: the video is cut into T equal
  segments and one frame is taken from each (random offset in training, the centre in
  evaluation). The clip always spans the whole video.
* Dense sampling, for Kinetics and Moments in Time: T frames ``stride`` apart, from a random
  start in training, or from N evenly spaced starts in evaluation.

Short videos (fewer frames than the clip needs): segment sampling repeats frames in temporal
order (each segment is shorter than a frame); dense sampling repeats the last frame. Neither
ever reads past the end, and the order of time is always preserved.
"""

from __future__ import annotations

import numpy as np


def segment_indices(
    num_frames: int,
    num_segments: int,
    train: bool,
    rng: np.random.Generator | None = None,
    clip: int = 0,
    num_clips: int = 1,
) -> list[int]:
    """TSN sampling. In evaluation, clip ``k`` of ``num_clips`` takes offset (k + 0.5) / num_clips."""
    if num_frames < 1 or num_segments < 1:
        raise ValueError(f"need num_frames >= 1 and num_segments >= 1, got {num_frames}, {num_segments}")
    seg = num_frames / num_segments
    if train:
        rng = rng or np.random.default_rng()
        offsets = rng.random(num_segments)
    else:
        offsets = np.full(num_segments, (clip + 0.5) / num_clips)
    idx = np.floor((np.arange(num_segments) + offsets) * seg).astype(int)
    return np.clip(idx, 0, num_frames - 1).tolist()


def dense_indices(
    num_frames: int,
    num_frames_clip: int,
    stride: int,
    train: bool,
    rng: np.random.Generator | None = None,
    clip: int = 0,
    num_clips: int = 1,
) -> list[int]:
    """T frames ``stride`` apart; evaluation clips start evenly spaced over the video."""
    if num_frames < 1 or num_frames_clip < 1 or stride < 1:
        raise ValueError("num_frames, num_frames_clip and stride must be >= 1")
    span = (num_frames_clip - 1) * stride + 1
    room = max(num_frames - span, 0)
    if train:
        rng = rng or np.random.default_rng()
        start = int(rng.integers(0, room + 1))
    else:
        start = round(room * (clip + 0.5) / num_clips) if num_clips > 1 else room // 2
    idx = start + stride * np.arange(num_frames_clip)
    return np.minimum(idx, num_frames - 1).tolist()

"""The clip a model was trained on (``ClipSpec``), and what a timeline needs of a model (``ClipScorer``).

Below both ``predictor`` (which has a ClipSpec) and ``timeline`` (which plans windows by one and scores
them with any ClipScorer, a ``Predictor`` among them), so neither imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from sevnet.engine.card import ModelCard, as_card


@dataclass(frozen=True)
class ClipSpec:
    """The clip a model was trained on, as stored in its checkpoint metadata.

    The clip's *duration* is not stored by training: dense sampling spans ``span_frames`` frames
    (``(num_frames - 1) * frame_stride + 1``), so its duration is ``span_frames / fps`` of the
    training videos; segment sampling spreads the frames over each whole training video, whose
    length is a property of the dataset (Something-Something: 2-6 s). ``clip_seconds`` is read from
    the metadata key of that name when present (add it to the sidecar, or pass it to ``load``).
    """

    num_frames: int
    size: int  # side of the square centre crop
    scale: int  # short side the frames are resized to before the crop
    sampling: str  # "segment" (frames spread over the clip) or "dense" (frames ``frame_stride`` apart)
    frame_stride: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip_seconds: float | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | ModelCard) -> ClipSpec:
        card = as_card(meta)
        clip, seconds = card.clip, card.clip.seconds
        return cls(
            num_frames=int(clip.num_frames),
            size=int(clip.crop),
            scale=int(clip.scale),
            sampling=str(clip.sampling),
            frame_stride=int(clip.frame_stride),
            mean=tuple(card.preprocessing.mean),
            std=tuple(card.preprocessing.std),
            clip_seconds=None if seconds is None else float(seconds),
        )

    @property
    def span_frames(self) -> int | None:
        """Frames one clip spans with dense sampling; None for segment sampling (the whole video)."""
        return (self.num_frames - 1) * self.frame_stride + 1 if self.sampling == "dense" else None

    def seconds_at(self, fps: float) -> float | None:
        """The training clip's duration for a video at ``fps``, when it can be known."""
        if self.clip_seconds is not None:
            return self.clip_seconds
        span = self.span_frames
        return None if span is None else span / fps


class ClipScorer(Protocol):
    """What ``timeline.run_timeline`` needs of a model: a ``Predictor`` is one."""

    clip_spec: ClipSpec
    classes: list[str]
    multi_label: bool

    def probabilities(self, clips: np.ndarray | torch.Tensor) -> np.ndarray: ...

"""Top-k classes for video files, with the checkpoint's own preprocessing and class names.

Each video is decoded and sampled exactly as in evaluation; long videos can be covered by several
clips whose scores are averaged (or by a timeline: ``timeline.py``). A video that cannot be read
gets an error entry naming the file; the others still get their predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sevnet.data.annotations import Annotation, Sample
from sevnet.data.config import inference_config
from sevnet.data.datasets import VideoDataset
from sevnet.data.video import DEFAULT_MAX_PIXELS

from .runtime import Runner


def inference_dataset(
    paths: list[str | Path], meta: dict[str, Any], clips: int = 1, dataset_class: type[VideoDataset] = VideoDataset
) -> VideoDataset:
    """A dataset over arbitrary files with the checkpoint's evaluation preprocessing."""
    data = meta["data"]  # its frame_template too: frame folders are read as in training
    max_pixels = int(data.get("max_pixels", DEFAULT_MAX_PIXELS))  # the sidecar or checkpoint may set its own
    cfg = inference_config(data, eval_clips=clips, max_pixels=max_pixels)
    no_label: int | list[int] = [] if meta.get("multi_label") else -1
    samples = [Sample(Path(p), no_label, frames=Path(p).is_dir()) for p in paths]
    return dataset_class(Annotation(samples, list(meta["class_names"]), bool(meta.get("multi_label"))), cfg, False)


def predict_videos(
    paths: list[str | Path], runner: Runner, meta: dict[str, Any], topk: int = 5, clips: int = 1
) -> list[dict[str, Any]]:
    """One entry per path: ``{"video", "top": [{"label", "score"}, ...]}`` or ``{"video", "error"}``
    (kept for callers with a runner; ``sevnet.load(...).predict`` and ``batch.predict_files`` are the API)."""
    from .batch import predict_files
    from .predictor import Predictor

    return list(predict_files(Predictor(runner, meta), [Path(p) for p in paths], topk=topk, clips=clips))

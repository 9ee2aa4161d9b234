"""Top-k classes for video files, with the checkpoint's own preprocessing and class names.

Each video is decoded and sampled exactly as in evaluation; long videos can be covered by several
clips whose scores are averaged. A video that cannot be read gets an error entry naming the file;
the others still get their predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sevnet.data.annotations import Annotation, Sample
from sevnet.data.config import DataConfig
from sevnet.data.datasets import VideoDataset

from .runtime import Runner


def inference_dataset(paths: list[str | Path], meta: dict[str, Any], clips: int = 1) -> VideoDataset:
    """A dataset over arbitrary files with the checkpoint's evaluation preprocessing."""
    data = meta["data"]
    cfg = DataConfig(
        format="video_list",
        num_frames=data["num_frames"],
        sampling=data["sampling"],
        frame_stride=data["frame_stride"],
        eval_scale=data["eval_scale"],
        eval_crop=data["eval_crop"],
        eval_clips=clips,
        eval_crops=1,
        mean=list(data["mean"]),
        std=list(data["std"]),
    )
    no_label: int | list[int] = [] if meta.get("multi_label") else -1
    samples = [Sample(Path(p), no_label, frames=Path(p).is_dir()) for p in paths]
    return VideoDataset(Annotation(samples, list(meta["class_names"]), bool(meta.get("multi_label"))), cfg, False)


def predict_videos(
    paths: list[str | Path], runner: Runner, meta: dict[str, Any], topk: int = 5, clips: int = 1
) -> list[dict[str, Any]]:
    """One entry per path: ``{"video", "top": [(class, score), ...]}`` or ``{"video", "error"}``."""
    dataset = inference_dataset(paths, meta, clips)
    classes = dataset.classes
    results = []
    for i, path in enumerate(paths):
        item = dataset[i]
        if "error" in item:
            results.append({"video": str(path), "error": item["error"][1]})
            continue
        logits = runner(item["clip"].numpy())  # (views, K)
        if logits.shape[-1] != len(classes):
            raise RuntimeError(f"model outputs {logits.shape[-1]} classes but its metadata names {len(classes)}")
        if meta.get("multi_label"):
            scores = 1 / (1 + np.exp(-logits))
        else:
            e = np.exp(logits - logits.max(1, keepdims=True))
            scores = e / e.sum(1, keepdims=True)
        mean = scores.mean(0)
        order = np.argsort(-mean)[: min(topk, len(classes))]
        results.append({"video": str(path), "top": [(classes[j], float(mean[j])) for j in order]})
    return results

"""Prediction over many files: DataLoader workers decode while the model runs on batches, results
stream out in input order as JSON lines, and a rerun skips the videos its output already holds.

Why: one file at a time in one process leaves the model waiting on the decoder (or the reverse),
and a job over thousands of files must survive being stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader

from sevnet.data.annotations import Sample
from sevnet.data.datasets import VideoDataset
from sevnet.data.video import probe_video

from .predict import inference_dataset
from .predictor import Predictor, long_video_warning

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".ogv"}
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def expand_inputs(inputs: list[str | Path], recursive: bool = False) -> list[Path]:
    """Files stay as given; a folder holding videos becomes its videos (sorted; subfolders too with
    ``recursive``); a folder of images only is one video given as frames (a frame folder), and with
    ``recursive`` a folder of frame folders becomes those folders."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            out.append(item)
            continue
        found = sorted(item.rglob("*") if recursive else item.iterdir())
        videos = [p for p in found if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        frame_folders = sorted({p.parent for p in found if p.suffix.lower() in IMAGE_SUFFIXES})
        if videos:
            out.extend(videos)
        elif recursive and frame_folders and item not in frame_folders:
            out.extend(frame_folders)
        elif not recursive and not frame_folders and any(p.suffix.lower() in VIDEO_SUFFIXES for p in item.rglob("*")):
            raise ValueError(f"{item}: no videos directly in it, but its subfolders hold some: add --recursive")
        else:
            out.append(item)  # a frame folder (an empty folder is reported as unreadable)
    return list(dict.fromkeys(out))


def open_results(path: str | Path) -> TextIO:
    """``path`` for appending JSON lines; a line torn by a kill is ended first, so the next one parses."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.is_file() and path.stat().st_size > 0 and path.read_bytes()[-1:] != b"\n"
    f = open(path, "a")  # noqa: SIM115 (the caller closes it)
    if torn:
        f.write("\n")
    return f


def finished_videos(out: str | Path) -> set[str]:
    """Videos with a result line in ``out`` (error lines are retried; a torn last line is ignored)."""
    path = Path(out)
    if not path.is_file():
        return set()
    done: set[str] = set()
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "video" in entry and "error" not in entry:
            done.add(entry["video"])
    return done


class ProbedDataset(VideoDataset):
    """The inference dataset, whose items also carry their file's (frame count, fps) for the
    long-video warning (from the probe sampling needs anyway, so nothing is read twice)."""

    def count_frames(self, sample: Sample, problems: list[str] | None = None) -> int:
        if sample.frames:
            return super().count_frames(sample, problems)
        info = probe_video(sample.path, self.cfg.max_pixels)
        self._probe = (info.num_frames, info.fps)
        if info.partial and problems is not None:  # a cut-off file: its result says so, as training's skipped.csv
            problems.append(info.partial)
        return info.num_frames

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        self._probe: tuple[int, float] | None = None
        item = super().__getitem__(key)
        item["probe"] = self._probe
        return item


def make_loader(
    predictor: Predictor, paths: list[Path], clips: int = 1, batch_size: int = 8, workers: int = 0
) -> DataLoader:
    """The loader ``predict_files`` reads: items decoded and preprocessed in ``workers`` processes."""
    dataset = inference_dataset(list(paths), predictor.meta, clips, ProbedDataset)
    return DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=list,
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )  # fmt: skip


def predict_files(
    predictor: Predictor, paths: list[Path], topk: int = 5, clips: int = 1, batch_size: int = 8, workers: int = 0,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """One result per path, in order: ``{"video", "top": [{"label", "score"}], ["warning"], ["partial"]}`` or
    ``{"video", "error"}``. ``workers`` loader processes decode ahead while the model runs."""
    if not paths:
        return
    for items in make_loader(predictor, paths, clips, batch_size, workers):
        good = [it for it in items if "error" not in it]
        probs = predictor.probabilities(torch.cat([it["clip"] for it in good]).numpy()) if good else None
        k = 0
        for it in items:
            video = str(paths[it["index"]])
            if "error" in it:
                yield {"video": video, "error": it["error"][1]}
                continue
            result: dict[str, Any] = {"video": video, "top": predictor.top(np.mean(probs[k : k + clips], 0), topk)}
            k += clips
            if it["probe"] is not None and (warning := long_video_warning(predictor.clip_spec, *it["probe"])):
                result["warning"] = warning
            if "partial" in it:  # decodes only in part: the clip repeats its last good frame past the cut
                result["partial"] = it["partial"][1]
            yield result

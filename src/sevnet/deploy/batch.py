"""Prediction over many files: DataLoader workers decode while the model runs on batches, results
stream out in input order as JSON lines, and a rerun skips the videos its output already holds.

Why: one file at a time in one process leaves the model waiting on the decoder (or the reverse),
and a job over thousands of files must survive being stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader

from sevnet.data.annotations import Sample
from sevnet.data.datasets import VideoDataset
from sevnet.data.video import probe_video
from sevnet.engine.rundir import check_folder
from sevnet.errors import InputError, SevnetError

from .predictor import Predictor, long_video_warning
from .runtime import Runner

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
            raise InputError(f"{item}: no videos directly in it, but its subfolders hold some: add --recursive")
        else:
            out.append(item)  # a frame folder (an empty folder is reported as unreadable)
    return list(dict.fromkeys(out))


class ResultsFileError(SevnetError, RuntimeError):
    """The results file cannot be written: another process writes it, or it is not writable."""


class ResultsFile:
    """The JSON-lines results of ``predict --out``, held by one writer at a time.

    Why: two runs appending to one file leave every video twice, a kill leaves a torn last line, and a
    rerun that retries a failure must not leave its old error line behind. So: an exclusive ``flock``
    on ``<file>.lock`` (released by the kernel when the process dies: never stale) refuses a second
    writer before any work; on opening, unparsable lines (a torn tail) and the error lines of the
    videos this run retries are dropped (rewritten through a temporary file and a rename, so a kill
    loses nothing): at every moment the file holds at most one record per video."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_folder(self.path.parent, "the --out folder")
        if self.path.is_dir():
            raise ResultsFileError(f"{self.path}: is a folder; --out takes a file (e.g. results.jsonl)")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(self.lock_path, self.path)
        except OSError as err:
            raise ResultsFileError(f"{self.path}: cannot write there ({err.strerror})") from None
        self.records = _read_records(self.path)
        self._out: TextIO | None = None

    def done(self) -> set[str]:
        """Videos that already have a result (error records are retried)."""
        return {video for video, record in self.records.items() if "error" not in record}

    def start(self, videos: list[str]) -> None:
        """Rewrite the file without torn lines and without the old records of ``videos`` (retried now)."""
        retried = set(videos)
        keep = [r for v, r in self.records.items() if v not in retried]
        if len(keep) != len(self.records) or self.records.dropped or self.records.duplicates:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        self._out = open(self.path, "a")  # noqa: SIM115 (closed by close())

    def write(self, result: dict[str, Any]) -> None:
        assert self._out is not None, "start() first"
        self._out.write(json.dumps(result, allow_nan=False) + "\n")  # NaN is not JSON: never written
        self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
        if not self._lock.closed:
            self.lock_path.unlink(missing_ok=True)  # before the release: a waiter re-checks the inode
            self._lock.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Records(dict):
    dropped = 0  # lines that did not parse as a record (a torn last line, garbage)
    duplicates = 0  # records of a video that a later line replaced


def _read_records(path: Path) -> _Records:
    """The last record per video in ``path`` (a success before a later error of the same video wins)."""
    records = _Records()
    if not path.is_file():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not (isinstance(entry, dict) and isinstance(entry.get("video"), str)):
            records.dropped += bool(line.strip())
            continue
        old = records.pop(entry["video"], None)  # re-inserted: file order follows the latest record
        records.duplicates += old is not None
        records[entry["video"]] = old if old is not None and "error" in entry and "error" not in old else entry
    return records


def _lock(lock_path: Path, results: Path) -> TextIO:
    """An exclusive, non-blocking flock on ``lock_path``; a ResultsFileError naming the holder if taken."""
    for _ in range(10):
        handle = open(lock_path, "a+")  # noqa: SIM115 (held for the writer's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ResultsFileError(
                f"{results}: {holder} is writing to it (lock {lock_path.name}); wait for it to finish, or give "
                f"another --out file"
            ) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                break  # the file at the path is the one locked (not one its last holder just removed)
        except FileNotFoundError:
            pass
        handle.close()
    else:
        raise ResultsFileError(f"{results}: could not lock {lock_path}")
    handle.seek(0)
    handle.truncate()
    handle.write(f"sevnet predict (pid {os.getpid()} on {socket.gethostname()})\n")
    handle.flush()
    return handle


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
    dataset = predictor.dataset(list(paths), clips, ProbedDataset)
    dataset.uint8_clips = predictor.uint8_input  # normalised where the model runs (a GPU: a quarter of the bytes)
    return DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=list,
        persistent_workers=False, prefetch_factor=4 if workers else None,
        pin_memory=predictor.device.type == "cuda",
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
        probs = predictor.probabilities(torch.cat([it["clip"] for it in good])) if good else None
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


def predict_videos(
    paths: list[str | Path], runner: Runner, meta: dict[str, Any], topk: int = 5, clips: int = 1
) -> list[dict[str, Any]]:
    """One entry per path: ``{"video", "top": [{"label", "score"}, ...]}`` or ``{"video", "error"}``
    (kept for callers with a runner; ``sevnet.load(...).predict`` and ``predict_files`` are the API)."""
    return list(predict_files(Predictor(runner, meta), [Path(p) for p in paths], topk=topk, clips=clips))

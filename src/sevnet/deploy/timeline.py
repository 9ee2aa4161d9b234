"""Timelines over long videos: per-window predictions in one sequential decoding pass, then segments.

Why this shape: a model trained on clips of a few seconds describes a 20-minute file badly with one
clip (segment sampling makes a slideshow of it; dense sampling sees one moment). So the file is cut
into windows of ``window`` seconds every ``stride`` seconds, and each window is sampled exactly as
the model was trained: its ``num_frames`` frames spread over the window (segment sampling) or
``frame_stride`` apart in its middle (dense), as if the window were a whole video.

The file is decoded once, front to back (no seek per window). Only the frames some window samples
are converted to RGB and resized; they wait in a fixed-size ring buffer until their last window is
complete, so memory does not grow with the video's length. Window scores are smoothed over
neighbouring windows, labelled (top-1, or every class above the threshold for multi-label models)
and merged into segments ``(label, start, end, mean score)``; segments shorter than
``min_duration`` are absorbed by their best-scoring neighbour.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from sevnet.data.sampling import dense_indices, segment_indices
from sevnet.errors import InputError
from sevnet.video import DecodeError, decoded_frames, fill_forward, probe_video

from .clip_spec import ClipScorer, ClipSpec


@dataclass(frozen=True)
class WindowPlan:
    start: int  # first frame of the window
    end: int  # one past its last frame
    indices: tuple[int, ...]  # the frames the model sees, ascending


def plan_windows(num_frames: int, fps: float, window: float, stride: float, spec: ClipSpec) -> list[WindowPlan]:
    """Windows of ``window`` s every ``stride`` s; a last window is aligned to the end so the tail is covered."""
    if not window > 0 or not stride > 0:
        raise InputError(f"window and stride must be > 0 seconds, got {window} and {stride}")
    size = max(1, round(window * fps))
    step = max(1, round(stride * fps))
    if num_frames <= size:
        starts = [0]
    else:
        starts = list(range(0, num_frames - size + 1, step))
        if starts[-1] + size < num_frames:
            starts.append(num_frames - size)
    plans = []
    for s in starts:
        n = min(size, num_frames - s)
        if spec.sampling == "segment":
            rel = segment_indices(n, spec.num_frames, train=False)
        else:
            rel = dense_indices(n, spec.num_frames, spec.frame_stride, train=False)
        plans.append(WindowPlan(s, s + n, tuple(s + i for i in rel)))
    return plans


class FramePrep:
    """Per-frame resize + centre crop (uint8), then per-clip scaling and normalisation: the same
    operations as the evaluation transform, split so that frames can wait resized in the ring."""

    def __init__(self, spec: ClipSpec) -> None:
        self.size = spec.size
        self.resize = v2.Resize(max(spec.scale, spec.size), antialias=True)
        # uint8 -> normalised float32 through a table of the evaluation transform's own operations
        # (ToDtype: .to(float32).mul_(1/255); Normalize: .sub(mean).div_(std)): bit-identical, one pass.
        mean = torch.as_tensor(spec.mean, dtype=torch.float32)
        std = torch.as_tensor(spec.std, dtype=torch.float32)
        values = torch.arange(256, dtype=torch.uint8).to(torch.float32).mul_(1.0 / 255)
        self.table = torch.stack([values.sub(mean[c]).div_(std[c]) for c in range(3)]).numpy()

    def frame(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, size, size) uint8."""
        video = self.resize(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0))
        return F.center_crop(video, [self.size, self.size])[0]

    def clips(self, frames: np.ndarray) -> np.ndarray:
        """(B, T, 3, size, size) uint8 -> float (B, 3, T, size, size) model input."""
        b, t, c, h, w = frames.shape
        out = np.empty((b, c, t, h, w), np.float32)
        for k in range(c):
            out[:, k] = self.table[k][frames[:, :, k]]
        return out


class FrameRing:
    """A fixed number of preprocessed frames; frame ``position`` lives in slot ``position % capacity``."""

    def __init__(self, capacity: int, shape: tuple[int, ...]) -> None:
        self.capacity = capacity
        self.buffer = np.zeros((capacity, *shape), np.uint8)
        self.newest = -1

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes

    def put(self, position: int, frame: np.ndarray) -> None:
        self.buffer[position % self.capacity] = frame
        self.newest = max(self.newest, position)

    def get(self, positions: list[int]) -> np.ndarray:
        if positions and (positions[0] <= self.newest - self.capacity or positions[-1] > self.newest):
            raise IndexError(f"positions {positions[0]}..{positions[-1]} not in the ring (newest {self.newest})")
        return self.buffer[[p % self.capacity for p in positions]]


_DONE = object()


@dataclass
class WindowStream:
    """Decodes a file once and yields batches of window clips as soon as their frames have arrived."""

    path: Path
    plans: list[WindowPlan]
    prep: FramePrep
    batch_size: int = 8
    threaded: bool = True
    ring: FrameRing = field(init=False)

    def __post_init__(self) -> None:
        self.needed = sorted({i for p in self.plans for i in p.indices})
        self.position = {index: k for k, index in enumerate(self.needed)}
        self.last = [self.position[p.indices[-1]] for p in self.plans]
        capacity = max(self.last[w] - self.position[p.indices[0]] + 1 for w, p in enumerate(self.plans))
        self.ring = FrameRing(capacity, (3, self.prep.size, self.prep.size))
        self._ready: dict[int, np.ndarray] = {}  # window -> its frames, copied out of the ring

    def __iter__(self) -> Iterator[tuple[list[WindowPlan], np.ndarray]]:
        """Batches of (plans, uint8 clips (B, T, 3, size, size)); with ``threaded``, decoding runs in a
        background thread (a queue of two batches) while the caller runs the model."""
        if not self.threaded:
            yield from self._produce()
            return
        queue: Queue = Queue(maxsize=2)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce_into, args=(queue, stop), daemon=True)
        worker.start()
        try:
            while (item := queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def _produce_into(self, queue: Queue, stop: threading.Event) -> None:
        def put(item: object) -> bool:
            while not stop.is_set():
                with contextlib.suppress(Full):
                    queue.put(item, timeout=0.1)
                    return True
            return False

        try:
            for batch in self._produce():
                if not put(batch):
                    return
            put(_DONE)
        except Exception as err:  # handed to the consumer, raised there
            put(err)

    def _produce(self) -> Iterator[tuple[list[WindowPlan], np.ndarray]]:
        emitted = 0
        pending: list[int] = []
        self._filled = 0
        converted, latest = None, None
        frames = decoded_frames(self.path, keep=self._wanted)
        for frame, filled in fill_forward(frames, self.needed, str(self.path)):  # a gap or the tail: fills forward
            if frame is not converted:  # frames no window samples are never converted
                converted, latest = frame, self.prep.frame(frame.to_ndarray(format="rgb24")).numpy()
            for _ in filled:
                self.ring.put(self._filled, latest)
                self._filled += 1
                emitted = yield from self._emit(self._filled, emitted, pending)
        if pending:
            yield self._batch(pending)

    def _wanted(self, index: int) -> bool:
        """Will frame ``index`` be used? Asked when its packet is sent to the decoder, which is ahead of
        the frames already filled, so the answer errs towards decoding."""
        return self._filled < len(self.needed) and self.needed[self._filled] <= index

    def _emit(self, filled: int, emitted: int, pending: list[int]) -> Iterator[tuple[list[WindowPlan], np.ndarray]]:
        """Copy every window whose frames are all in the ring out of it (before its slots are reused)."""
        while emitted < len(self.plans) and self.last[emitted] < filled:
            pending.append(emitted)
            self._ready[emitted] = self.ring.get([self.position[i] for i in self.plans[emitted].indices])
            emitted += 1
            if len(pending) == self.batch_size:
                yield self._batch(pending)
                pending.clear()
        return emitted

    def _batch(self, pending: list[int]) -> tuple[list[WindowPlan], np.ndarray]:
        clips = np.stack([self._ready.pop(w) for w in pending])
        return [self.plans[w] for w in pending], clips


@dataclass
class Segment:
    label: str
    start: float
    end: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start": round(self.start, 3), "end": round(self.end, 3), "score": self.score}


@dataclass
class Timeline:
    """Windows (start, end in seconds; class scores) and the segments merged from them."""

    video: str
    classes: list[str]
    fps: float
    num_frames: int
    starts: np.ndarray  # (N,) seconds
    ends: np.ndarray  # (N,) seconds
    scores: np.ndarray  # (N, K) per-window class scores (softmax, or sigmoid for multi-label)
    smoothed: np.ndarray  # (N, K) after the moving average
    segments: list[Segment]
    ring_frames: int = 0  # capacity of the frame ring used (frames)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def top(self, i: int, topk: int = 5) -> list[dict[str, Any]]:
        order = np.argsort(-self.scores[i], kind="stable")[:topk]
        return [{"label": self.classes[j], "score": float(self.scores[i, j])} for j in order]

    def to_dict(self, topk: int = 5) -> dict[str, Any]:
        """``{"video", "duration", "windows": [{"start", "end", "top"}], "segments": [...]}``, seconds."""
        windows = [
            {"start": round(float(s), 3), "end": round(float(e), 3), "top": self.top(i, topk)}
            for i, (s, e) in enumerate(zip(self.starts, self.ends))
        ]
        return {
            "video": self.video,
            "duration": round(self.duration, 3),
            "windows": windows,
            "segments": [s.to_dict() for s in self.segments],
        }


def smooth_scores(scores: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` windows (odd; near the ends, over the windows that exist)."""
    if width <= 1 or len(scores) <= 1:
        return scores.copy()
    half = width // 2
    padded = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, 0)])
    n = len(scores)
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (padded[hi] - padded[lo]) / (hi - lo)[:, None]


def window_cores(starts: np.ndarray, ends: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The stretch of time each window stands for: from the midpoint with its left neighbour's centre
    to the one with its right neighbour's (the first from 0, the last to the end)."""
    centres = (starts + ends) / 2
    cuts = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[0.0], cuts]), np.concatenate([cuts, [duration]])


def _runs(labels: np.ndarray) -> list[list[int]]:
    """[label, first window, last window] for each run of equal labels."""
    runs: list[list[int]] = []
    for i, lab in enumerate(labels.tolist()):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = i
        else:
            runs.append([lab, i, i])
    return runs


def _absorb_short(labels: np.ndarray, sm: np.ndarray, lo: np.ndarray, hi: np.ndarray, min_duration: float) -> None:
    """Relabel the shortest run below ``min_duration`` to its better-scoring neighbour, until none is left."""
    while True:
        runs = _runs(labels)
        short = [r for r in runs if hi[r[2]] - lo[r[1]] < min_duration]
        if len(runs) < 2 or not short:
            return
        run = min(short, key=lambda r: hi[r[2]] - lo[r[1]])
        k = runs.index(run)
        neighbours = [runs[j][0] for j in (k - 1, k + 1) if 0 <= j < len(runs)]
        window = slice(run[1], run[2] + 1)
        best = max(neighbours, key=lambda lab: -np.inf if lab < 0 else float(sm[window, lab].mean()))
        labels[window] = best


def make_segments(
    classes: list[str], starts: np.ndarray, ends: np.ndarray, smoothed: np.ndarray, duration: float,
    threshold: float, min_duration: float, multi_label: bool = False,
) -> list[Segment]:  # fmt: skip
    """Segments from smoothed window scores: top-1 runs (single-label) or above-threshold runs per class."""
    lo, hi = window_cores(starts, ends, duration)
    if multi_label:
        tracks = [np.where(smoothed[:, c] >= threshold, c, -1) for c in range(len(classes))]
    else:
        labels = smoothed.argmax(1)
        labels[smoothed.max(1) < threshold] = -1
        tracks = [labels]
    segments = []
    for labels in tracks:
        _absorb_short(labels, smoothed, lo, hi, min_duration)
        for lab, first, last in _runs(labels):
            if lab >= 0:
                score = float(smoothed[first : last + 1, lab].mean())
                segments.append(Segment(classes[lab], float(lo[first]), float(hi[last]), score))
    return sorted(segments, key=lambda s: (s.start, s.label))


def run_timeline(
    predictor: ClipScorer, path: str | Path, window: float, stride: float | None = None, smooth: int = 3,
    threshold: float | None = None, min_duration: float = 0.0, batch_size: int = 8,
) -> Timeline:  # fmt: skip
    """Per-window scores over ``path`` (one decoding pass) and the segments merged from them.

    ``stride`` defaults to half the window; ``smooth``: windows in the moving average (1 = none);
    ``threshold``: minimum smoothed score for a label (default 0 single-label, 0.5 multi-label)."""
    if not isinstance(path, str | os.PathLike):
        kind = f"{type(path).__module__}.{type(path).__name__}".removeprefix("builtins.")
        raise TypeError(
            f"a timeline reads a video file (a path; its frame rate times the windows), got a {kind}: for "
            f"frames in memory use predictor.predict(frames), one clip, or write them to a video file first"
        )
    stride = window / 2 if stride is None else stride
    if smooth < 1:
        raise InputError(f"smooth must be >= 1 windows, got {smooth}")
    path = Path(path)
    if path.is_dir():
        raise DecodeError(f"{path}: a timeline needs a video file (a frame folder has no frame rate)")
    info = probe_video(path)
    plans = plan_windows(info.num_frames, info.fps, window, stride, predictor.clip_spec)
    stream = WindowStream(path, plans, FramePrep(predictor.clip_spec), batch_size)
    scores = np.zeros((len(plans), len(predictor.classes)))
    done = 0
    for batch_plans, clips in stream:
        scores[done : done + len(batch_plans)] = predictor.probabilities(stream.prep.clips(clips))
        done += len(batch_plans)
    starts = np.array([p.start for p in plans], float) / info.fps
    ends = np.array([p.end for p in plans], float) / info.fps
    return build_timeline(str(path), predictor.classes, info.fps, info.num_frames, starts, ends, scores, smooth,
                          threshold, min_duration, predictor.multi_label, stream.ring.capacity)  # fmt: skip


def build_timeline(
    video: str, classes: list[str], fps: float, num_frames: int, starts: np.ndarray, ends: np.ndarray,
    scores: np.ndarray, smooth: int = 3, threshold: float | None = None, min_duration: float = 0.0,
    multi_label: bool = False, ring_frames: int = 0,
) -> Timeline:  # fmt: skip
    """Smoothing, labels and segments over window scores (N, K): the part of a timeline that does not
    depend on where the scores came from (windows of a file here, a live stream's results in
    ``sevnet stream --csv``), so both give the same segments from the same scores."""
    if smooth < 1:
        raise InputError(f"smooth must be >= 1 windows, got {smooth}")
    sm = smooth_scores(scores, smooth)
    thr = (0.5 if multi_label else 0.0) if threshold is None else threshold
    segments = make_segments(classes, starts, ends, sm, num_frames / fps, thr, min_duration, multi_label)
    return Timeline(video, list(classes), fps, num_frames, starts, ends, scores, sm, segments, ring_frames)

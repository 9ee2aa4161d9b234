"""Live sources for streaming: a video file, a camera, or a network stream (rtsp/http/...) via PyAV,
each frame preprocessed as in evaluation and fed to a step runner, with per-frame timings.

Why one loop for all three: PyAV (FFmpeg) opens files, devices and URLs alike; what differs is
how a source fails (missing file, refused connection, a stream that stops), so each failure is
turned into a ``SourceError`` naming the source, and the statistics gathered so far survive it.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from sevnet.data.config import inference_config
from sevnet.data.transforms import build_transform
from sevnet.engine.card import ModelCard
from sevnet.engine.metrics import class_scores
from sevnet.errors import SevnetError
from sevnet.streaming.runners import StepRunner
from sevnet.video import frame_timing

from .timeline import Timeline, build_timeline

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")


class SourceError(SevnetError, RuntimeError):
    """A source that cannot be opened or that fails while being read; the message names it."""


def open_source(source: str, input_format: str | None = None, timeout: float = 10.0) -> av.container.InputContainer:
    """Open a file path, a camera index ("0" -> /dev/video0 on Linux) or a URL, or any FFmpeg input
    with an explicit ``input_format`` (e.g. ``lavfi``, ``v4l2``)."""
    target, fmt, options = source, input_format, {}
    if fmt is None and source.isdigit():
        if sys.platform.startswith("linux"):
            target, fmt = f"/dev/video{source}", "v4l2"
        elif sys.platform == "darwin":
            fmt = "avfoundation"
        else:
            raise SourceError(f"camera {source}: give the device name and --input-format (e.g. dshow) on this system")
    elif fmt is None and "://" in source:
        if source.split("://", 1)[0].lower() not in URL_SCHEMES:
            raise SourceError(f"{source}: unsupported URL scheme (known: {', '.join(URL_SCHEMES)})")
        if source.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"  # UDP loses packets behind NAT and firewalls
    elif fmt is None and not Path(source).is_file():
        raise SourceError(f"{source}: no such file")
    try:
        container = av.open(target, format=fmt, options=options, timeout=timeout)
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or err
        hint = _seek_hint(source) if "Input/output" in str(reason) else ""
        name = source if target == source else f"{source} ({target})"  # a camera index: name its device
        raise SourceError(f"{name}: cannot open ({reason}){hint}") from None
    if not container.streams.video:
        container.close()
        raise SourceError(f"{source}: no video stream")
    return container


def frame_rate(container: av.container.InputContainer) -> float:
    """The video stream's frame rate, by the rule every decoder uses (``sevnet.video.frame_timing``)."""
    return frame_timing(container.streams.video[0]).fps


def source_frames(container: av.container.InputContainer, source: str) -> Iterator[tuple[int, float, np.ndarray]]:
    """(position, time in seconds, RGB uint8 frame) for each frame as the source delivers it; a decoding
    failure is a SourceError. Not ``sevnet.video.decoded_frames``: a camera's or network stream's
    timestamps need not start at 0 nor keep to a rate, so a live frame is numbered by its arrival (0,
    1, 2, ...) and timed from the first frame, instead of indexed from its timestamp."""
    stream = container.streams.video[0]
    fps = frame_rate(container)
    start = None
    index = 0
    try:
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else index / fps
            start = t if start is None else start
            yield index, t - start, frame.to_ndarray(format="rgb24")
            index += 1
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or err
        hint = _seek_hint(source) if index == 0 else ""
        raise SourceError(f"{source}: stopped after {index} frames ({reason}){hint}") from None


def _seek_hint(source: str) -> str:
    """Why an HTTP source can fail before its first frame: an MP4/MOV written with its index (moov) at
    the end, FFmpeg's default, must be read by seeking, which a server without range requests refuses."""
    if source.split("://", 1)[0].lower() not in ("http", "https"):
        return ""
    return (
        ". An MP4/MOV over HTTP whose index (moov) is at the end of the file needs a server that answers range "
        "requests; serve it from one, or move the index to the front: ffmpeg -i IN.mp4 -c copy -movflags "
        "faststart OUT.mp4"
    )


def frame_preprocessor(meta: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """RGB uint8 (H, W, 3) -> float32 (1, 3, crop, crop): the checkpoint's evaluation transform."""
    transform = build_transform(False, inference_config(ModelCard.from_meta(meta).data_meta(), num_frames=1))

    def prep(rgb: np.ndarray) -> np.ndarray:
        return transform(torch.from_numpy(rgb)[None])[:, :, 0].numpy()  # (1, 3, T=1, h, w) -> (1, 3, h, w)

    return prep


@dataclass
class StreamStats:
    """What a stream run did, filled as it goes so an interrupted or failed run still reports it."""

    source: str
    stride: int = 1
    decoded: int = 0
    fed: int = 0
    media_time: float = 0.0
    fps: float = 25.0  # the source's frame rate
    started: float = field(default_factory=time.perf_counter)
    step_ms: list[float] = field(default_factory=list)
    prep_ms: list[float] = field(default_factory=list)
    top: list[tuple[str, float]] = field(default_factory=list)
    scores: np.ndarray | None = None  # every class's score after the last fed frame
    ended: str = "running"

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        out: dict[str, Any] = {
            "source": self.source,
            "ended": self.ended,
            "frames_decoded": self.decoded,
            "frames_fed": self.fed,
            "stride": self.stride,
            "media_seconds": round(self.media_time, 3),
            "wall_seconds": round(wall, 3),
            "fed_per_second": round(self.fed / wall, 1) if wall else 0.0,
        }
        for name, values in (("step_ms", self.step_ms), ("preprocess_ms", self.prep_ms)):
            if values:
                out[name] = _distribution(values)
        out["top"] = [[name, round(score, 4)] for name, score in self.top]
        return out


def _distribution(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: round(ordered[int(q * (len(ordered) - 1))], 3)  # noqa: E731
    return {"mean": round(statistics.fmean(values), 3), "p50": pick(0.5), "p95": pick(0.95), "max": pick(1.0)}


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C (SIGINT) sets a flag that the streaming loop checks between frames, instead of raising
    KeyboardInterrupt wherever the main thread happens to be: raised inside the overlay's encoder or
    the decoder, it can leave them unable to flush or close (a stream that never ends). A second
    Ctrl-C interrupts at once (a source blocked on the network). Outside the main thread, or where
    SIGINT is ignored (a process started in the background), nothing changes."""
    hit: list[bool] = []
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        if hit:
            raise KeyboardInterrupt
        hit.append(True)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield lambda: False
        return
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)


def run_stream(
    runner: StepRunner, meta: dict[str, Any], source: str, stats: StreamStats, emit: Callable[[dict[str, Any]], None],
    *, every: int = 1, topk: int = 5, input_format: str | None = None, realtime: bool = False, timeout: float = 10.0,
    on_frame: Callable[[int, float, np.ndarray], None] | None = None,
) -> StreamStats:  # fmt: skip
    """Feed every ``stats.stride``-th frame of ``source``; ``emit`` a result every ``every`` fed frames.
    ``on_frame(index, time, rgb)`` sees every decoded frame, fed or not, after ``stats`` has its
    newest prediction (``--overlay`` draws it).

    Raises SourceError (stats kept) when the source cannot be opened or fails mid-way; the caller
    catches KeyboardInterrupt the same way, so Ctrl-C still ends with a summary.
    """
    card = ModelCard.from_meta(meta)
    classes, multi = list(card.class_names), bool(card.multi_label)
    prep = frame_preprocessor(meta)
    container = open_source(source, input_format, timeout)
    stats.fps = frame_rate(container)
    runner.reset()
    with deferred_interrupt() as interrupted, contextlib.closing(container):
        for index, t, rgb in source_frames(container, source):
            stats.decoded, stats.media_time = index + 1, t
            if index % stats.stride == 0:
                if realtime:  # a file played at its own pace, as a camera would deliver it
                    time.sleep(max(0.0, t - (time.perf_counter() - stats.started)))
                t0 = time.perf_counter()
                frame = prep(rgb)
                t1 = time.perf_counter()
                scores = class_scores(np.asarray(runner.frame(frame)[0]), multi)
                t2 = time.perf_counter()
                stats.fed += 1
                stats.prep_ms.append((t1 - t0) * 1e3)
                stats.step_ms.append((t2 - t1) * 1e3)
                order = np.argsort(-scores)[: min(topk, len(classes))]
                stats.top, stats.scores = [(classes[j], float(scores[j])) for j in order], scores
                if stats.fed % every == 0:
                    top = [[name, round(score, 4)] for name, score in stats.top]
                    step_ms, prep_ms = round(stats.step_ms[-1], 3), round(stats.prep_ms[-1], 3)
                    emit({"frame": index, "time": round(t, 3), "fed": stats.fed, "top": top, "step_ms": step_ms,
                          "preprocess_ms": prep_ms})  # fmt: skip
            if on_frame is not None:
                on_frame(index, t, rgb)
            if interrupted():
                raise KeyboardInterrupt  # here, between frames, where nothing is half-done
        stats.ended = "end of stream"
    return stats


def results_timeline(
    stats: StreamStats, classes: list[str], times: list[float], scores: list[np.ndarray], smooth: int = 3,
    threshold: float | None = None, min_duration: float = 0.0, multi_label: bool = False,
) -> Timeline:  # fmt: skip
    """A stream's results as a timeline, through the same smoothing and segments as ``sevnet predict
    --window``. Result i (at ``times[i]``, a causal prediction over the frames up to that one) stands
    for the stretch since result i - 1: its "window" runs from the previous result's end (0 for the
    first) to the end of its own frame, so the segments cover the streamed media, 0 to the end of the
    last decoded frame."""
    frame = 1.0 / stats.fps
    duration = stats.media_time + frame
    ends = np.asarray(times, float) + frame
    starts = np.concatenate([[0.0], ends[:-1]])
    matrix = np.asarray(scores, float).reshape(len(times), len(classes))
    fps = stats.decoded / duration if stats.decoded else stats.fps  # num_frames / fps = the streamed duration
    return build_timeline(stats.source, classes, fps, stats.decoded, starts, ends, matrix, smooth, threshold,
                          min_duration, multi_label)  # fmt: skip

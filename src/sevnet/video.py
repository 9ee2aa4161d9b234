"""Video decoding with PyAV, one set of rules for every reader of a video file.

Why one module: the dataset reader, the frame cache, timelines, ``sevnet data check`` and the
demos must agree on which decoded frame is frame ``i`` of a file, which frame a missing index gets
and when a file counts as cut off; a rule copied into each drifts. Here are: opening a file (the
pixel limit, the decoder threads), a stream's timing (the one timestamp -> frame index rule),
decoded frames with their indices, the fill-forward rule for wanted indices, and the truncation
rule. This is the bottom layer: it imports nothing of ``sevnet.data``, ``deploy`` or ``engine``.

Frame indices come from presentation timestamps, not from counting, so a seek that lands early
(VP9 webm seeking can return frames from the start) is harmless, a variable frame rate keeps
frames at their time, and a seek that lands late can be detected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av

from sevnet.errors import SevnetError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SKIPPABLE_CODECS",
    "DecodeError",
    "FrameTiming",
    "OversizedVideoError",
    "VideoInfo",
    "check_pixels",
    "decoded_frames",
    "decoder_threads",
    "fill_forward",
    "frame_timing",
    "not_a_file",
    "open_video",
    "probe_video",
    "stream_duration",
    "thread_count",
    "truncation_reason",
]


class DecodeError(SevnetError, RuntimeError):
    """A video or frame folder that cannot be read; the message names the file."""


class OversizedVideoError(DecodeError):
    """Frames larger than the pixel limit (``data.max_pixels``): refused before they are decoded."""


# Width x height above which a video is not decoded (``data.max_pixels``): DCI 4K. One 8000x8000
# frame is 192 MB as RGB; a clip of them costs gigabytes per item.
DEFAULT_MAX_PIXELS = 4096 * 2160

# Decoders that honour skip_frame=NONREF: frames no other frame refers to (most B-frames) and that the
# caller will not use are then not decoded at all.
SKIPPABLE_CODECS = frozenset({"h264", "hevc"})


def check_pixels(path: str | Path, width: int, height: int, max_pixels: int) -> None:
    """OversizedVideoError naming ``path`` when ``width x height`` is over ``max_pixels`` (0 = no limit)."""
    if max_pixels and width * height > max_pixels:
        raise OversizedVideoError(
            f"{path}: {width}x{height} = {width * height} pixels per frame is over the limit of {max_pixels} "
            "(data.max_pixels; downscale the video, or raise the limit)"
        )


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a video file (None if it is a regular file): a FIFO or a device
    (/dev/zero) would block or never end, and is not "no such file"."""
    if path.is_file():
        return None
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "a folder, not a video file"
    return "not a regular file (a FIFO, device or socket): give a video file"


def decoder_threads(workers: int, cores: int) -> int:
    """Threads for each decoder when ``workers`` loader processes decode at once on ``cores`` cores:
    ``max(1, cores // workers)``. FFmpeg's automatic count is every core for each decoder, so W workers
    would run W x C threads on C cores and spend the difference switching between them."""
    return max(1, cores // max(1, workers))


def thread_count() -> int:
    """``decoder_threads`` for the calling process: a DataLoader worker shares the cores with its
    ``num_workers - 1`` siblings; any other process decodes alone."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return decoder_threads(info.num_workers if info is not None else 1, cores)


def open_video(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, threads: int | None = None
) -> av.container.InputContainer:
    """The file opened for decoding its first video stream (frame threading on; ``threads`` decoder
    threads, FFmpeg's choice if None). Every failure is a DecodeError naming the file, so that a
    loader can skip and count it; a frame size over ``max_pixels`` is refused before any frame decodes."""
    path = Path(path)
    if reason := not_a_file(path):
        raise DecodeError(f"{path}: {reason}")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: empty file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DecodeError(f"{path}: cannot open as video ({err})") from None
    if not container.streams.video:
        container.close()
        raise DecodeError(f"{path}: no video stream")
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None:  # a damaged header can name a codec FFmpeg has no decoder for
        container.close()
        raise DecodeError(f"{path}: no decoder for its video stream")
    try:
        check_pixels(path, context.width or 0, context.height or 0, max_pixels)
    except OversizedVideoError:
        container.close()
        raise
    stream.thread_type = "AUTO"
    if threads is not None:
        context.thread_count = threads
    return container


@dataclass(frozen=True)
class FrameTiming:
    """A stream's frame rate, time base and first timestamp: what turns a timestamp into a frame index."""

    fps: float
    time_base: float  # seconds per timestamp unit
    start: int  # the stream's first timestamp (frame 0)

    def index(self, pts: int) -> int:
        """The frame index of timestamp ``pts``: the one rule (0-based, at the average frame rate)."""
        return round((pts - self.start) * self.time_base * self.fps)

    def timestamp(self, index: int) -> int:
        """The timestamp at or before frame ``index`` (a backward seek target)."""
        return self.start + math.floor(index / self.fps / self.time_base)


def frame_timing(stream: av.VideoStream) -> FrameTiming:
    """The stream's timing; a stream that reports no rate counts as 25 fps."""
    fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0) or 25.0
    time_base = float(stream.time_base) if stream.time_base else 1.0 / fps
    start = stream.start_time if stream.start_time is not None else 0
    return FrameTiming(fps, time_base, start)


def stream_duration(container: av.container.InputContainer, stream: av.VideoStream, timing: FrameTiming) -> float:
    """Seconds the container claims for the stream (the stream's duration, else the file's; 0 if neither)."""
    if stream.duration:
        return float(stream.duration * timing.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def truncation_reason(
    frames: int, header_frames: int, covered: float, duration: float, interval: float, verb: str = "are present"
) -> str | None:
    """Why a video holds less than its container says (a cut-off tail), or None. ``frames`` of the
    ``header_frames`` the container lists ("``verb``": present, or decode), covering ``covered`` of its
    ``duration`` seconds; ``interval``: seconds per frame. Containers over-report a frame or so
    (docs/data.md), hence the tolerances: 2 % of the frames, and 2 frames or 5 % of the duration."""
    if header_frames and frames < header_frames - max(1, round(0.02 * header_frames)):
        return f"{frames} of the {header_frames} frames the container lists {verb}"
    if duration and covered < duration - max(2 * interval, 0.05 * duration):
        return f"frames cover {covered:.2f} s of the {duration:.2f} s the container claims ({frames} frames {verb})"
    return None


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    duration: float  # seconds
    width: int
    height: int
    # Why the file holds less than its container says (a cut-off tail), or None; such a file still
    # yields clips (missing frames repeat the last good one), and training names it as partial.
    partial: str | None = None


def probe_video(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Frame count, fps, duration and size. Containers often misreport the count (or report 0),
    so the count is taken by demuxing packets (cheap: nothing is decoded). A video over
    ``max_pixels`` is refused here (``OversizedVideoError``), before any frame is decoded."""
    with open_video(path, max_pixels) as container:
        stream = container.streams.video[0]
        timing = frame_timing(stream)
        last_pts = None
        try:
            counted = 0
            for packet in container.demux(stream):
                if packet.size > 0:
                    counted += 1
                    last_pts = packet.pts if last_pts is None or packet.pts is None else max(last_pts, packet.pts)
        except av.FFmpegError as err:
            raise DecodeError(f"{path}: unreadable packets ({err})") from None
        if counted == 0:
            raise DecodeError(f"{path}: no video frames")
        duration = stream_duration(container, stream, timing) or counted / timing.fps
        covered = counted / timing.fps
        if last_pts is not None:
            covered = (last_pts - timing.start) * timing.time_base + 1 / timing.fps
        cut = truncation_reason(counted, stream.frames, covered, duration, 1 / timing.fps)
        w, h = stream.codec_context.width, stream.codec_context.height
        return VideoInfo(counted, timing.fps, duration, w, h, f"truncated: {cut}" if cut else None)


def decoded_frames(
    video: str | Path | av.container.InputContainer, keep: Callable[[int], bool] | None = None,
    problems: list[str] | None = None,
) -> Iterator[tuple[int, av.VideoFrame]]:  # fmt: skip
    """(frame index, frame) of the first video stream in decoding order, the index from the frame's
    timestamp (``FrameTiming.index``), or its position when it has none. ``video``: a path (opened with
    ``open_video``'s defaults, closed at the end) or a container from ``open_video``.

    ``keep(index)``: False for a frame the caller will not use, asked as its packet is read: an
    intra-only codec's (MJPEG) packet is then not decoded at all, and an H.264 / HEVC decoder skips
    it when no other frame refers to it; such frames may be missing from the output.

    A decoding error before the first frame is a DecodeError; after some frames (a damaged tail) the
    frames end there and, when ``problems`` is a list, why is appended to it."""
    if not isinstance(video, av.container.InputContainer):
        with open_video(video) as container:
            yield from decoded_frames(container, keep, problems)
        return
    stream = video.streams.video[0]
    timing, context = frame_timing(stream), stream.codec_context
    intra_only = keep is not None and context.codec.intra_only
    skip_nonref = keep is not None and context.name in SKIPPABLE_CODECS
    n, last = 0, None
    try:
        for packet in video.demux(stream):
            if keep is not None:
                used = packet.pts is None or not packet.size or keep(timing.index(packet.pts))
                if intra_only and not used:
                    continue
                if skip_nonref:
                    context.skip_frame = "DEFAULT" if used else "NONREF"
            for frame in packet.decode():
                pts = frame.pts if frame.pts is not None else frame.dts
                last = timing.index(pts) if pts is not None else n
                yield last, frame
                n += 1
    except av.FFmpegError as err:
        if last is None:
            raise DecodeError(f"{video.name}: decoding failed ({err})") from None
        if problems is not None:
            problems.append(f"decoding stopped after frame {last} ({err})")


Frame = TypeVar("Frame")


def fill_forward(
    frames: Iterable[tuple[int, Frame]], wanted: Sequence[int], name: str
) -> Iterator[tuple[Frame, list[int]]]:
    """(frame, the ``wanted`` indices it stands for) from (index, frame) pairs in index order, for
    ``wanted`` sorted and without repeats: the one rule for frames by index. An index gets the frame
    at that index; one in a gap of a variable-frame-rate video, the next frame that exists; one past
    the last decodable frame (the end, or a damaged tail), the last frame, yielded again. Stops as
    soon as every index is filled. No frame at or after the first index: a DecodeError naming ``name``."""
    if not wanted:
        return
    pending, last = 0, None
    for index, frame in frames:
        if index < wanted[pending]:
            continue
        filled = []
        while pending < len(wanted) and wanted[pending] <= index:
            filled.append(wanted[pending])
            pending += 1
        last = frame
        yield frame, filled
        if pending == len(wanted):
            return
    if last is None:
        raise DecodeError(f"{name}: no decodable frame at or after index {wanted[0]}")
    yield last, list(wanted[pending:])

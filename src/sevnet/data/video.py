"""Decoding: PyAV for video files, JPEG folders for frame datasets.

Only what a clip needs is decoded: we seek to the keyframe before the first wanted frame and
decode forward. Frame indices come from presentation timestamps, not from counting, so a seek
that lands early (VP9 webm seeking can return frames from the start) is harmless and one that
lands late is detected and retried from the start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from sevnet.errors import SevnetError

from .frames import list_frame_images


class DecodeError(SevnetError, RuntimeError):
    """A video or frame folder that cannot be read; the message names the file."""


class OversizedVideoError(DecodeError):
    """Frames larger than the pixel limit (``data.max_pixels``): refused before they are decoded."""


# Width x height above which a video is not decoded (``data.max_pixels``): DCI 4K. One 8000x8000
# frame is 192 MB as RGB; a clip of them costs gigabytes per item.
DEFAULT_MAX_PIXELS = 4096 * 2160


def check_pixels(path: str | Path, width: int, height: int, max_pixels: int) -> None:
    """OversizedVideoError naming ``path`` when ``width x height`` is over ``max_pixels`` (0 = no limit)."""
    if max_pixels and width * height > max_pixels:
        raise OversizedVideoError(
            f"{path}: {width}x{height} = {width * height} pixels per frame is over the limit of {max_pixels} "
            "(data.max_pixels; downscale the video, or raise the limit)"
        )


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


def _open(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> av.container.InputContainer:
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
    context = container.streams.video[0].codec_context
    if context is None:  # a damaged header can name a codec FFmpeg has no decoder for
        container.close()
        raise DecodeError(f"{path}: no decoder for its video stream")
    try:
        check_pixels(path, context.width or 0, context.height or 0, max_pixels)
    except OversizedVideoError:
        container.close()
        raise
    return container


def decoder_threads(workers: int, cores: int) -> int:
    """Threads for each decoder when ``workers`` loader processes decode at once on ``cores`` cores:
    ``max(1, cores // workers)``. FFmpeg's automatic count is every core for each decoder, so W workers
    would run W x C threads on C cores and spend the difference switching between them."""
    return max(1, cores // max(1, workers))


def _thread_count() -> int:
    """``decoder_threads`` for the calling process: a DataLoader worker shares the cores with its
    ``num_workers - 1`` siblings; any other process decodes alone."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return decoder_threads(info.num_workers if info is not None else 1, cores)


def _stream_timing(stream: av.VideoStream) -> tuple[float, float, int]:
    fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0) or 25.0
    time_base = float(stream.time_base) if stream.time_base else 1.0 / fps
    start = stream.start_time if stream.start_time is not None else 0
    return fps, time_base, start


def probe_video(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Frame count, fps, duration and size. Containers often misreport the count (or report 0),
    so the count is taken by demuxing packets (cheap: nothing is decoded). A video over
    ``max_pixels`` is refused here (``OversizedVideoError``), before any frame is decoded."""
    with _open(path, max_pixels) as container:
        stream = container.streams.video[0]
        fps, time_base, start = _stream_timing(stream)
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
        if stream.duration:
            duration = stream.duration * time_base
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = counted / fps
        covered = (last_pts - start) * time_base + 1 / fps if last_pts is not None else counted / fps
        partial = _cut_off(counted, stream.frames, covered, float(duration), fps)
        w, h = stream.codec_context.width, stream.codec_context.height
        return VideoInfo(counted, fps, float(duration), w, h, partial)


def _cut_off(counted: int, header_frames: int, covered: float, duration: float, fps: float) -> str | None:
    """Why a video holds less than its container says (the rule of ``sevnet data check``'s
    ``truncated``, with its tolerances: containers over-report a frame or so), or None."""
    if header_frames and counted < header_frames - max(1, round(0.02 * header_frames)):
        return f"truncated: {counted} of the {header_frames} frames the container lists are present"
    if duration and covered < duration - max(2 / fps, 0.05 * duration):
        return f"truncated: frames cover {covered:.2f} s of the {duration:.2f} s the container claims"
    return None


def read_frames(
    path: str | Path, indices: Sequence[int], max_pixels: int = DEFAULT_MAX_PIXELS, problems: list[str] | None = None
) -> torch.Tensor:
    """Frames at ``indices`` (0-based, at the stream's average frame rate) as uint8 (T, H, W, 3).

    An index past the last frame gets the last frame; an index that falls in a gap of a
    variable-frame-rate video gets the next frame that exists. Frames over ``max_pixels`` are
    refused (``OversizedVideoError``). A decoding error after some frames (a damaged tail) keeps
    what decoded and, when ``problems`` is a list, appends why to it.
    """
    if len(indices) == 0:
        raise ValueError("indices must not be empty")
    wanted = sorted(set(int(i) for i in indices))
    frames = _decode_wanted(path, wanted, seek=wanted[0] > 0, max_pixels=max_pixels, problems=problems)
    if frames is None:  # the seek landed after the first wanted frame: decode from the start
        frames = _decode_wanted(path, wanted, seek=False, max_pixels=max_pixels, problems=problems)
    assert frames is not None
    return torch.from_numpy(np.stack([frames[i] for i in indices]))


def _decode_wanted(
    path: str | Path, wanted: list[int], seek: bool, max_pixels: int, problems: list[str] | None
) -> dict[int, np.ndarray] | None:
    out: dict[int, np.ndarray] = {}
    pending = 0  # position in ``wanted`` of the next index to fill
    last: np.ndarray | None = None
    with _open(path, max_pixels) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = _thread_count()
        # One converter for the file: ``frame.to_ndarray(format=...)`` builds a new swscale context for every
        # frame, which cost more than decoding (0.48 vs 0.18 ms a 320x240 frame; same pixels).
        to_rgb = VideoReformatter()
        fps, time_base, start = _stream_timing(stream)
        try:
            if seek:
                target = start + math.floor(wanted[0] / fps / time_base)
                container.seek(target, stream=stream, backward=True, any_frame=False)
            next_wanted = lambda: wanted[min(pending, len(wanted) - 1)]  # noqa: E731 (reads the live position)
            for n, frame in enumerate(_frames(container, stream, next_wanted)):
                pts = frame.pts if frame.pts is not None else frame.dts
                index = round((pts - start) * time_base * fps) if pts is not None else n
                if n == 0 and seek and index > wanted[0]:
                    return None
                if index < wanted[pending]:
                    continue
                check_pixels(path, frame.width, frame.height, max_pixels)  # a size change mid-stream
                last = to_rgb.reformat(frame, format="rgb24").to_ndarray()
                while pending < len(wanted) and wanted[pending] <= index:
                    out[wanted[pending]] = last
                    pending += 1
                if pending == len(wanted):
                    break
        except av.FFmpegError as err:
            if last is None:
                raise DecodeError(f"{path}: decoding failed ({err})") from None
            # A truncated tail: keep what decoded, fill the rest with the last good frame.
            if problems is not None:
                problems.append(f"decoding stopped after frame {max(out)} ({err})")
    if last is None and not out:
        raise DecodeError(f"{path}: no decodable frame at or after index {wanted[0]}")
    final = last if last is not None else out[max(out)]
    for index in wanted[pending:]:
        out[index] = final
    return out


def _frames(container: av.container.InputContainer, stream: av.VideoStream, next_wanted: Any) -> Iterator[Any]:
    """The stream's frames in order. For an intra-only codec (MJPEG: every frame stands alone) the packets
    before ``next_wanted()`` (a frame index) are not decoded at all: a clip of 16 frames out of 36 then
    decodes 16. Other codecs decode every packet (later frames depend on earlier ones)."""
    if not stream.codec_context.codec.intra_only:
        yield from container.decode(stream)
        return
    fps, time_base, start = _stream_timing(stream)
    for packet in container.demux(stream):
        if packet.pts is not None and packet.size and round((packet.pts - start) * time_base * fps) < next_wanted():
            continue
        yield from packet.decode()


def count_frame_files(folder: str | Path, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")) -> int:
    folder = Path(folder)
    if not folder.is_dir():
        raise DecodeError(f"{folder}: no such frame folder")
    n = sum(1 for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))
    if n == 0:
        raise DecodeError(f"{folder}: no {'/'.join(suffixes)} frames")
    return n


def check_image_pixels(path: Path, max_pixels: int) -> None:
    """``check_pixels`` for one image, from its header alone (PIL reads the size without decoding)."""
    if not max_pixels:
        return
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DecodeError(f"{path}: cannot read frame ({err})") from None
    check_pixels(path, width, height, max_pixels)


def read_frame_folder(
    folder: str | Path, indices: Sequence[int], template: str = "{:05d}.jpg", first: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:  # fmt: skip
    """Frames ``template.format(first + i)`` for each index, as uint8 (T, H, W, 3); an image over
    ``max_pixels`` is refused from its header, before it is decoded (as a video's frames are).

    ``template="sorted"``: the i-th image of the folder in name order (the folder format's frame
    folders, whose file names follow no template).
    """
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    if template == "sorted":
        return read_sorted_frames(folder, indices, max_pixels)

    folder = Path(folder)
    cache: dict[int, torch.Tensor] = {}
    for i in set(indices):
        path = folder / template.format(first + int(i))
        if path.is_file():  # a missing frame: the read below names it
            check_image_pixels(path, max_pixels)
        try:
            cache[i] = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB).permute(1, 2, 0)
        except (RuntimeError, OSError) as err:
            raise DecodeError(f"{path}: cannot read frame ({err})") from None
    return stack_frames(cache, indices, lambda i: folder / template.format(first + int(i)))


def read_sorted_frames(folder: str | Path, indices: list[int], max_pixels: int = 4096 * 2160) -> torch.Tensor:
    """Frames ``indices`` (0-based) of a frame folder whose images need not follow
    ``data.frame_template``: the i-th image in name order, as uint8 (T, H, W, 3)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    images = list_frame_images(folder)
    if not images:
        raise DecodeError(f"{folder}: no .jpg/.jpeg/.png frames")
    cache: dict[int, torch.Tensor] = {}
    for i in set(indices):
        path = images[min(int(i), len(images) - 1)]  # past the end: the last frame (as for videos)
        check_image_pixels(path, max_pixels)
        try:
            cache[i] = decode_image(read_file(str(path)), mode=ImageReadMode.RGB).permute(1, 2, 0)
        except (RuntimeError, OSError) as err:
            raise DecodeError(f"{path}: cannot read frame ({err})") from None
    return stack_frames(cache, indices, lambda i: images[min(int(i), len(images) - 1)])


def stack_frames(frames: dict[int, torch.Tensor], indices: Sequence[int], name: Callable[[int], Path]) -> torch.Tensor:
    """The frames ``indices`` stacked to (T, H, W, 3); images of different sizes are a DecodeError
    naming two of them (``name(i)``: frame i's file), not torch's "stack expects each tensor..."."""
    shapes = {tuple(t.shape): i for i, t in frames.items()}
    if len(shapes) > 1:
        (a, i), (b, j) = list(shapes.items())[:2]
        raise DecodeError(f"{name(i)} is {a[1]}x{a[0]} but {name(j)} is {b[1]}x{b[0]}: a frame folder's images must "
                          f"all have one size")  # fmt: skip
    return torch.stack([frames[i] for i in indices])

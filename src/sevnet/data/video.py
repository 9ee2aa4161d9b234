"""The dataset's readers: frames of a video file by index (decoded by ``sevnet.video``), JPEG folders.

Only what a clip needs is decoded: we seek to the keyframe before the first wanted frame and
decode forward. Frame indices come from presentation timestamps (``sevnet.video.FrameTiming``),
not from counting, so a seek that lands early (VP9 webm seeking can return frames from the start)
is harmless and one that lands late is detected and retried from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

# The decoder itself (opening, timing, frame indices, truncation) is ``sevnet.video``; its names are
# re-exported here, where the data pipeline and older code import them from.
from sevnet.video import (  # noqa: F401
    DEFAULT_MAX_PIXELS,
    DecodeError,
    OversizedVideoError,
    VideoInfo,
    check_pixels,
    decoded_frames,
    decoder_threads,
    fill_forward,
    frame_timing,
    not_a_file,
    open_video,
    probe_video,
    thread_count,
)

from .frames import list_frame_images


def read_frames(
    path: str | Path, indices: Sequence[int], max_pixels: int = DEFAULT_MAX_PIXELS, problems: list[str] | None = None
) -> torch.Tensor:
    """Frames at ``indices`` (0-based, at the stream's average frame rate) as uint8 (T, H, W, 3).

    An index past the last frame gets the last frame; an index that falls in a gap of a
    variable-frame-rate video gets the next frame that exists (``sevnet.video.fill_forward``). Frames
    over ``max_pixels`` are refused (``OversizedVideoError``). A decoding error after some frames (a
    damaged tail) keeps what decoded and, when ``problems`` is a list, appends why to it.
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
    """The frames ``wanted`` (sorted, unique) in one pass, from the keyframe before the first when
    ``seek``; None when that seek landed after it. Only the frames some index gets are converted."""
    out: dict[int, np.ndarray] = {}
    with open_video(path, max_pixels, thread_count()) as container:
        if seek:
            stream = container.streams.video[0]
            try:
                container.seek(frame_timing(stream).timestamp(wanted[0]), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as err:
                raise DecodeError(f"{path}: decoding failed ({err})") from None
        # Frames before the next wanted index may be skipped (``decoded_frames``' keep): the index is
        # read live, as fill_forward fills them.
        keep = lambda index: index >= wanted[min(len(out), len(wanted) - 1)]  # noqa: E731
        frames = decoded_frames(container, keep, problems)
        if seek:
            first = next(frames, None)
            if first is not None and first[0] > wanted[0]:
                return None
            frames = chain([first] if first is not None else [], frames)
        # One converter for the file: ``frame.to_ndarray(format=...)`` builds a new swscale context for every
        # frame, which cost more than decoding (0.48 vs 0.18 ms a 320x240 frame; same pixels).
        to_rgb, converted, rgb = VideoReformatter(), None, None
        for frame, filled in fill_forward(frames, wanted, str(path)):
            if frame is not converted:
                check_pixels(path, frame.width, frame.height, max_pixels)  # a size change mid-stream
                converted, rgb = frame, to_rgb.reformat(frame, format="rgb24").to_ndarray()
            out.update(dict.fromkeys(filled, rgb))
    return out


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

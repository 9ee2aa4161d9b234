"""Write real test media: encoded videos (PyAV) and JPEG frame folders whose frames encode their
own index as a bar code, so a decoder that returns the wrong frame is caught."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

BITS = 7  # up to 128 frames
CODECS = {".mp4": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4", ".mkv": "libx264"}


def pattern_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """An RGB frame whose top half is a bar code of ``index`` (bit k = bar k white)."""
    frame = np.full((height, width, 3), 60, np.uint8)
    bar = width // BITS
    for k in range(BITS):
        if index >> k & 1:
            frame[: height // 2, k * bar : (k + 1) * bar] = 230
    frame[height // 2 :, :, 1] = (index * 37) % 200  # some colour, not used for decoding
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of ``pattern_frame`` (robust to lossy compression and resizing)."""
    h, w = frame.shape[:2]
    bar = w / BITS
    gray = frame[: h // 2].mean(axis=2) if frame.ndim == 3 else frame[: h // 2]
    value = 0
    for k in range(BITS):
        x0, x1 = int(k * bar + bar * 0.3), int((k + 1) * bar - bar * 0.3)
        if gray[h // 8 : 3 * h // 8, x0:x1].mean() > 145:
            value |= 1 << k
    return value


def write_video(
    path: Path,
    num_frames: int = 24,
    fps: int = 12,
    size: tuple[int, int] = (48, 64),
    pts: list[int] | None = None,
    frames: list[np.ndarray] | None = None,
) -> Path:
    """Encode a video (codec from the suffix). ``pts`` (in 1/fps units) makes it variable-rate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = CODECS[path.suffix]
    h, w = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "g": "8"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "10", "b:v": "0", "g": "8", "deadline": "realtime", "cpu-used": "8"}
        else:
            stream.options = {"qscale": "2", "g": "8"}
        stream.codec_context.time_base = Fraction(1, fps)
        images = frames if frames is not None else [pattern_frame(i, h, w) for i in range(num_frames)]
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_frame_folder(folder: Path, num_frames: int = 20, size: tuple[int, int] = (48, 64)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(pattern_frame(i, *size)).save(folder / f"{i + 1:05d}.jpg", quality=95)
    return folder


def truncate(path: Path, keep: float = 0.4) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path

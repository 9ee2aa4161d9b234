"""Timeline outputs beside JSON: a CSV, a timeline plot, and the video with its labels drawn on it."""

from __future__ import annotations

import contextlib
import csv
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sevnet.video import decoded_frames

from .timeline import Timeline, window_cores

CSV_FIELDS = ("video", "kind", "start", "end", "rank", "label", "score")


def write_csv(timelines: list[Timeline], path: str | Path, topk: int = 5) -> Path:
    """One row per window and rank (kind "window") and one per segment (kind "segment", rank 1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for tl in timelines:
            for i, (s, e) in enumerate(zip(tl.starts, tl.ends)):
                for rank, entry in enumerate(tl.top(i, topk), 1):
                    writer.writerow([tl.video, "window", f"{s:.3f}", f"{e:.3f}", rank, entry["label"],
                                     f"{entry['score']:.6f}"])  # fmt: skip
            for seg in tl.segments:
                writer.writerow([tl.video, "segment", f"{seg.start:.3f}", f"{seg.end:.3f}", 1, seg.label,
                                 f"{seg.score:.6f}"])  # fmt: skip
    return path


def class_colours(classes: list[str], prominent: list[str] | None = None) -> dict[str, tuple[float, ...]]:
    """A colour per class: by class index for up to 20 classes (the same in every plot); beyond,
    distinct colours for the ``prominent`` ones (most screen time first) and grey for the rest."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    if len(classes) <= 20 or prominent is None:
        return {name: cmap(i % cmap.N) for i, name in enumerate(classes)}
    colours = dict.fromkeys(classes, (0.75, 0.75, 0.75, 1.0))
    colours.update({name: cmap(i % cmap.N) for i, name in enumerate(prominent[: cmap.N])})
    return colours


def legend_classes(tl: Timeline, top1: np.ndarray, shown: list[int], limit: int) -> list[str]:
    """The classes drawn, most screen time first (segment seconds, then windows as top-1), at most ``limit``."""
    weight = dict.fromkeys([tl.classes[c] for c in shown], 0.0)
    for c in top1:
        weight[tl.classes[c]] = weight.get(tl.classes[c], 0.0) + 1e-3
    for seg in tl.segments:
        weight[seg.label] = weight.get(seg.label, 0.0) + seg.end - seg.start
    return sorted(weight, key=lambda name: -weight[name])[:limit]


def plot_timeline(tl: Timeline, path: str | Path, max_curves: int = 6, max_legend: int = 14) -> Path:
    """Three strips over time: segments, each window's top-1 (opacity = score), and the smoothed
    scores of the classes that matter most; one colour per class, with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = window_cores(tl.starts, tl.ends, tl.duration)
    top1 = tl.scores.argmax(1)
    shown = [int(c) for c in np.argsort(-tl.smoothed.max(0))[:max_curves]]
    legend = legend_classes(tl, top1, shown, max_legend)
    colours = class_colours(tl.classes, legend)
    fig, axes = plt.subplots(3, 1, figsize=(12, 4.2), sharex=True, gridspec_kw={"height_ratios": [1, 1, 2.2]})
    for seg in tl.segments:
        axes[0].broken_barh([(seg.start, seg.end - seg.start)], (0, 1), color=colours[seg.label], lw=0)
    for i, c in enumerate(top1):
        alpha = float(np.clip(tl.scores[i, c], 0.15, 1.0))
        axes[1].broken_barh([(lo[i], hi[i] - lo[i])], (0, 1), color=colours[tl.classes[c]], alpha=alpha, lw=0)
    centres = (tl.starts + tl.ends) / 2
    for c in shown:
        axes[2].plot(centres, tl.smoothed[:, c], color=colours[tl.classes[c]], lw=1.5)
    for ax, title in zip(axes, ("segments", "window top-1", "smoothed score")):
        ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xlim(0, tl.duration)
    for ax in axes[:2]:
        ax.set_yticks([])
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("time (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in legend]
    fig.legend(handles, legend, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(Path(tl.video).name, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def label_at(tl: Timeline, t: float) -> str:
    """The labels (with scores) of the segments covering time ``t`` (several for multi-label), or "-"."""
    here = [f"{seg.label} ({seg.score:.0%})" for seg in tl.segments if seg.start <= t < seg.end]
    return ", ".join(here) or "-"


def _draw_label(rgb: np.ndarray, text: str, font: object) -> np.ndarray:
    """``text`` (one or more lines) in white on a black box in the top-left corner."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


OVERLAY_SUFFIXES = (".mp4", ".mkv", ".mov")


def overlay_codec() -> str:
    """H.264 (libx264) where this FFmpeg build has the encoder, else MPEG-4 part 2, which every build has."""
    import av

    try:
        av.codec.Codec("libx264", "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        return "mpeg4"
    return "libx264"


class OverlayWriter:
    """Frames with a caption in their top-left corner, encoded as they come (yuv420p: even sides; frames
    larger than ``max_side`` scaled down) into ``.<stem>.partial<suffix>`` beside ``out``.

    Why the partial file: ``close()`` finishes the container and only then renames it to ``out``, so
    a run that stops part-way (Ctrl-C, a source that fails) still leaves a playable file of what it
    wrote, and ``out`` never names a half-written one. Audio is not copied.
    """

    def __init__(self, out: str | Path, fps: float, crf: int = 23, max_side: int = 1920) -> None:
        self.out = Path(out)
        self.partial = self.out.with_name(f".{self.out.stem}.partial{self.out.suffix}")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.crf, self.max_side = crf, max_side
        self.frames, self.last_pts = 0, -1
        self.size: tuple[int, int] = (0, 0)  # (height, width) of the output
        self.container: Any = None

    def write(self, rgb: np.ndarray, text: str, pts: int | None = None) -> None:
        """One RGB frame; ``pts`` in 1/fps units (default: the next one; never before the last)."""
        import av

        if self.container is None:
            self._open(rgb.shape[0], rgb.shape[1])
        image = av.VideoFrame.from_ndarray(_draw_label(self._fit(rgb), text, self.font), format="rgb24")
        image.pts = self.last_pts + 1 if pts is None else max(self.last_pts + 1, pts)
        image.time_base = 1 / self.rate
        self.container.mux(self.stream.encode(image))
        self.frames, self.last_pts = self.frames + 1, image.pts

    def _open(self, height: int, width: int) -> None:
        import av
        from PIL import ImageFont

        scale = min(1.0, self.max_side / max(height, width))
        self.size = (max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2))
        self.font = ImageFont.load_default(size=max(10, self.size[0] // 18))
        self.container = av.open(str(self.partial), "w")
        codec = overlay_codec()
        self.stream = self.container.add_stream(codec, rate=self.rate)
        self.stream.height, self.stream.width = self.size
        self.stream.pix_fmt = "yuv420p"
        options = {"crf": str(self.crf), "preset": "veryfast"} if codec == "libx264" else {"qscale": "3"}
        self.stream.options = options

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """The frame at the output size: cropped by the odd row/column, or resized (huge, or resized mid-stream)."""
        h, w = self.size
        if 0 <= rgb.shape[0] - h < 2 and 0 <= rgb.shape[1] - w < 2:
            return np.ascontiguousarray(rgb[:h, :w])
        from PIL import Image

        return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))

    def close(self) -> Path | None:
        """Flush the encoder, close the file and rename it to ``out``; None (and no file) if no frame came."""
        if self.container is None:
            return None
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()
            self.container = None
        self.partial.replace(self.out)
        return self.out

    def abort(self) -> None:
        """Close without keeping anything."""
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except Exception:
            self.abort()
            if exc[0] is None:
                raise


def write_overlay(tl: Timeline, out: str | Path, crf: int = 23) -> Path:
    """The video again (a second decoding pass), H.264, with the current segment's label and score
    and the time drawn in its top-left corner. Audio is not copied."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    last = -1
    with OverlayWriter(out, tl.fps, crf) as writer:
        for index, frame in decoded_frames(tl.video):
            if index <= last:  # a repeated timestamp: the encoder needs increasing ones
                continue
            last = index
            t = index / tl.fps
            writer.write(frame.to_ndarray(format="rgb24"), f"{t:.1f}s {label_at(tl, t)}", pts=index)
    return out

"""Timeline outputs beside JSON: a CSV, a timeline plot, and the video with its labels drawn on it."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np

from .timeline import Timeline, decoded_frames, window_cores

CSV_FIELDS = ("video", "kind", "start", "end", "rank", "label", "score")


def write_csv(timelines: list[Timeline], path: str | Path, topk: int = 5) -> Path:
    """One row per window and rank (kind "window") and one per segment (kind "segment", rank 1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
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
    from PIL import Image, ImageDraw

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def write_overlay(tl: Timeline, out: str | Path, crf: int = 23) -> Path:
    """The video again (a second decoding pass), H.264, with the current segment's label and score
    and the time drawn in its top-left corner. Audio is not copied."""
    import av
    from PIL import ImageFont

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fps = Fraction(tl.fps).limit_denominator(1001)
    with av.open(str(out), "w") as container:
        stream, last = None, -1
        for index, frame in decoded_frames(tl.video):
            if index <= last:  # a repeated timestamp: the encoder needs increasing ones
                continue
            last = index
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2  # yuv420p needs even sides
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
                font = ImageFont.load_default(size=max(10, h // 18))
            t = index / tl.fps
            text = f"{t:.1f}s {label_at(tl, t)}"
            image = av.VideoFrame.from_ndarray(_draw_label(np.ascontiguousarray(rgb[:h, :w]), text, font), "rgb24")
            image.pts = index
            image.time_base = 1 / fps
            container.mux(stream.encode(image))
        if stream is not None:
            container.mux(stream.encode(None))
    return out

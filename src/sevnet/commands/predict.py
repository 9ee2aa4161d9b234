"""Top-k classes for video files, folders of videos or frame folders, from a checkpoint (PyTorch) or an
exported model (ONNX Runtime, OpenVINO). With --window, a timeline per video: top-k per window and
labelled segments, in one decoding pass. With --out, JSON lines that a rerun resumes from. A video
that cannot be read is reported by name; the others are still predicted, and the exit code is 1 if
any failed."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", help="video files, folders of videos (see --recursive) or JPEG frame folders")
    p.add_argument("--checkpoint", help="a .safetensors checkpoint (PyTorch backend)")
    p.add_argument("--model", help="an exported .onnx or .xml file (with its .sevnet.json beside it)")
    p.add_argument("--backend", choices=["torch", "onnx", "openvino"], default=None)
    p.add_argument("--topk", type=_positive_int, default=5, help="classes per prediction (>= 1)")
    p.add_argument("--clips", type=_positive_int, default=1, help="clips per video, scores averaged (>= 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", default="auto",
                   help="where a checkpoint runs: auto (a GPU if there is one) | cpu | cuda | cuda:N")  # fmt: skip
    p.add_argument("--precision", choices=["auto", "float32", "bf16"], default="auto",
                   help="a checkpoint's arithmetic: auto = bf16 autocast on a GPU, float32 on a CPU")  # fmt: skip
    t = p.add_argument_group("timeline (one label per stretch of a long video)")
    t.add_argument("--window", type=_seconds, help="window length in seconds: per-window top-k and segments")
    t.add_argument("--stride", type=_seconds, help="seconds between window starts (default: half the window)")
    t.add_argument("--smooth", type=_positive_int, default=3, help="windows in the score moving average (1 = none)")
    t.add_argument(
        "--threshold", type=_non_negative, help="min smoothed score to label a stretch (default 0; 0.5 multi-label)"
    )
    t.add_argument(
        "--min-duration", type=_non_negative, default=0.0, help="segments shorter than this (s) merge into a neighbour"
    )
    t.add_argument("--csv", help="write windows and segments to this CSV file")
    t.add_argument("--plot", help="write a timeline plot (PNG); one file per video when there are several")
    t.add_argument("--overlay", help="write the video with its label drawn on it (MP4, H.264)")
    b = p.add_argument_group("many videos")
    b.add_argument("--recursive", action="store_true", help="look for videos in subfolders of a folder too")
    b.add_argument("--out", help="append one JSON line per video to this file; a rerun skips videos already in it")
    b.add_argument("--workers", type=_non_negative_int, help="decoding processes (default: 2 for 4+ videos, else 0)")
    b.add_argument("--batch-size", type=_positive_int, default=8, help="videos per model call")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")  # fmt: skip


def _check(args: argparse.Namespace) -> str | None:
    if not args.checkpoint and not args.model:
        return "give --checkpoint or --model"
    if args.window is None:
        given = [
            f"--{k.replace('_', '-')}" for k in ("stride", "csv", "plot", "overlay", "threshold") if getattr(args, k)
        ]
        given += ["--min-duration"] if args.min_duration else []
        if given:
            return f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --window SEC (a timeline)"
    elif args.clips != 1:
        return "--clips does not apply with --window (each window is one clip)"
    return None


def _error(message: object) -> int:
    print(f"sevnet predict: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from sevnet.deploy.batch import ResultsFile, expand_inputs

    if problem := _check(args):
        return _error(problem)
    from sevnet.engine.rundir import check_writable

    for flag in ("csv", "plot", "overlay"):  # written at the end: checked now, before any prediction
        if getattr(args, flag):
            check_writable(Path(getattr(args, flag)).parent, f"--{flag} folder")
    paths = expand_inputs(args.videos, args.recursive)
    with ResultsFile(args.out) if args.out else contextlib.nullcontext() as out:  # locked before any work
        paths = _resume(out, paths) if out is not None else paths
        results = _collect(args, _load(args), paths, out)
    failed = [r["video"] for r in results if "error" in r]
    if failed:
        from sevnet.display import printable

        shown = printable(", ".join(failed[:10])) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        print(f"{len(failed)} of {len(results)} videos could not be read: {shown}", file=sys.stderr)
    return 1 if failed else 0


def _load(args: argparse.Namespace) -> Any:
    from sevnet.deploy.predictor import load

    if args.model:
        return load(args.model, args.backend, args.checkpoint, device=args.device)
    return load(args.checkpoint, args.backend, device=args.device, precision=args.precision)


def _resume(out: Any, paths: list[Path]) -> list[Path]:
    """The paths without a result in ``out`` (as given on the command line); the others' old records
    (errors: retried) and any torn line are dropped from the file first."""
    done = out.done()
    if skipped := [p for p in paths if str(p) in done]:
        print(f"skipped {len(skipped)} already in {out.path}", file=sys.stderr)
    if out.records.dropped:
        print(f"note: {out.path}: dropped {out.records.dropped} line(s) that were not a result (a torn last line "
              f"from a killed run?)", file=sys.stderr)  # fmt: skip
    paths = [p for p in paths if str(p) not in done]
    out.start([str(p) for p in paths])
    return paths


def _collect(args: argparse.Namespace, predictor: Any, paths: list[Path], out: Any) -> list[dict[str, Any]]:
    """Run every path, writing each result as it comes (JSON line, table line) and return them all."""
    from tqdm import tqdm

    timelines: list[Any] = []  # for the CSV
    stream = _timelines(args, predictor, paths, timelines) if args.window else _predictions(args, predictor, paths)
    show = not args.no_progress and (sys.stderr.isatty() or bool(args.out)) and len(paths) > 1
    results = []
    for result in tqdm(stream, total=len(paths), unit="video", disable=not show, dynamic_ncols=True):
        results.append(result)
        if out is not None:
            out.write(result)
        if "warning" in result:
            tqdm.write(f"warning: {result['video']}: {result['warning']}", file=sys.stderr)
        if not args.json and out is None:
            tqdm.write(_format(result, args.topk))
    if args.json and out is None:
        print(json.dumps(results, indent=2, allow_nan=False))
    if args.window and args.csv:
        from sevnet.deploy.render import write_csv

        write_csv(timelines, args.csv, args.topk)
    return results


def _predictions(args: argparse.Namespace, predictor: Any, paths: list[Path]) -> Iterator[dict[str, Any]]:
    from sevnet.deploy.batch import predict_files

    workers = args.workers if args.workers is not None else (min(2, os.cpu_count() or 1) if len(paths) >= 4 else 0)
    yield from predict_files(predictor, paths, args.topk, args.clips, args.batch_size, workers)


def _per_video(option: str, video: Path, many: bool) -> Path:
    """``option`` as given for one video; ``<stem>-<video stem><suffix>`` beside it for several."""
    path = Path(option)
    return path.with_name(f"{path.stem}-{video.stem}{path.suffix}") if many else path


def _timelines(
    args: argparse.Namespace, predictor: Any, paths: list[Path], keep: list[Any]
) -> Iterator[dict[str, Any]]:
    from sevnet.data.video import DecodeError
    from sevnet.deploy.render import plot_timeline, write_overlay

    many = len(paths) > 1
    for path in paths:
        try:
            tl = predictor.timeline(path, args.window, args.stride, smooth=args.smooth, threshold=args.threshold,
                                    min_duration=args.min_duration)  # fmt: skip
        except (DecodeError, OSError) as err:
            yield {"video": str(path), "error": str(err)}
            continue
        if args.plot:
            plot_timeline(tl, _per_video(args.plot, path, many))
        if args.overlay:
            write_overlay(tl, _per_video(args.overlay, path, many))
        if args.csv:
            keep.append(tl)
        yield tl.to_dict(args.topk)


def _format(result: dict[str, Any], topk: int) -> str:
    """A table for a terminal: one line per video, or a window table and segments for a timeline;
    control characters in labels and paths are escaped (``sevnet.display.printable``)."""
    from sevnet.display import printable

    return printable(_table(result, topk), keep_newlines=True)


def _table(result: dict[str, Any], topk: int) -> str:
    from sevnet.display import printable

    video = printable(result["video"])  # a newline in a file name must not start a forged result line
    if "error" in result:
        return f"{video}: ERROR {printable(result['error'])}"
    if "windows" not in result:
        partial = f"  [partial: {printable(result['partial'])}]" if "partial" in result else ""
        return f"{video}: " + ", ".join(f"{printable(e['label'])} ({e['score']:.1%})" for e in result["top"]) + partial
    windows = result["windows"]
    lines = [f"{video}: {result['duration']:.1f} s, {len(windows)} windows"]
    shown = len(windows[0]["top"]) if windows else topk  # topk, or the class count if there are fewer classes
    lines.append(f"  {'start':>8} {'end':>8}  top-{shown}")
    for w in windows:
        top = ", ".join(f"{e['label']} ({e['score']:.1%})" for e in w["top"])
        lines.append(f"  {w['start']:>8.2f} {w['end']:>8.2f}  {top}")
    lines.append(f"  segments ({len(result['segments'])}):")
    for s in result["segments"]:
        lines.append(f"  {s['start']:>8.2f} {s['end']:>8.2f}  {s['label']} ({s['score']:.1%})")
    return "\n".join(lines)

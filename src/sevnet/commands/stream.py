"""Classify a live source frame by frame with a causal SEVNet: a video file, a camera index or an
rtsp/http URL. Each frame costs one step of the model (about a clip's cost / T); results come as
JSON lines (frame index, time, top-k, per-frame latency) or a live one-line display, and the run
ends (end of stream, Ctrl-C, or a source failure) with a summary. --overlay writes the frames with
the newest top-k drawn on them; --csv / --plot turn the results into a timeline with segments, as
``sevnet predict --window`` does for a file.

With --export, writes the stateful step model instead (ONNX / OpenVINO, optionally int8, state as
explicit inputs and outputs, checked against PyTorch) for --model or for other runtimes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from sevnet.commands.predict import _non_negative, _positive_int, _seconds

MAX_WINDOW = 36_000  # frames: 20 minutes at 30 fps; the window's buffer is allocated up front


def _window(text: str) -> int:
    """0..MAX_WINDOW: a larger window once tried to allocate 1.7 TB before failing."""
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= MAX_WINDOW:
        raise argparse.ArgumentTypeError(
            f"must be an integer 0-{MAX_WINDOW} (frames; 0 = since the start), got {text!r}"
        )
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", help="video file, camera index (0 = /dev/video0) or rtsp/http/... URL")
    p.add_argument("--checkpoint", help="a causal .safetensors checkpoint (PyTorch, or exported on the fly)")
    p.add_argument("--model", help="an exported step model (.onnx / .xml with its .sevnet.json)")
    p.add_argument("--backend", choices=["torch", "onnx", "openvino"], default="torch",
                   help="with --checkpoint: run in PyTorch or export the step first (default torch)")  # fmt: skip
    p.add_argument("--window", type=_window, default=0, help="pool the last W frames (0 = every frame since start)")
    p.add_argument("--topk", type=_positive_int, default=5)
    p.add_argument("--every", type=_positive_int, default=1, metavar="N", help="print a result every N fed frames")
    stride_help = "feed every S-th decoded frame (default: the training frame stride if dense sampling, else 1)"
    p.add_argument("--stride", type=_positive_int, default=None, help=stride_help)
    p.add_argument("--live", action="store_true", help="one updating line instead of JSON lines")
    p.add_argument("--realtime", action="store_true", help="play a file at its own frame rate, as a camera would")
    p.add_argument("--input-format", default=None, help="FFmpeg input format, e.g. v4l2, avfoundation, lavfi")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds to wait for a network source")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for the model")
    p.add_argument("--device", default="cpu",
                   help="--backend torch: cpu (default) | cuda | cuda:N | auto; exported models: the CPU")  # fmt: skip
    o = p.add_argument_group("outputs beside the JSON lines (written however the stream ends)")
    o.add_argument("--overlay", metavar="OUT.mp4", help="the frames as decoded with the newest top-k drawn on them")
    o.add_argument("--csv", metavar="OUT.csv", help="results and segments, in sevnet predict --window's CSV format")
    o.add_argument("--plot", metavar="OUT.png", help="a timeline plot of the results and segments")
    o.add_argument("--smooth", type=_positive_int, help="results in the score moving average (default 3)")
    o.add_argument("--threshold", type=_non_negative, help="min smoothed score for a segment (0; multi-label 0.5)")
    o.add_argument("--min-duration", type=_non_negative, help="segments shorter than this (s) merge into a neighbour")
    g = p.add_argument_group("export the step model instead of streaming")
    g.add_argument("--export", choices=["onnx", "openvino"], default=None)
    g.add_argument("--flat4d", action="store_true", help="every boundary tensor at most 4-D (buffers flattened)")
    g.add_argument("--out", default=None, help="output path without suffix (default: <checkpoint>-stream)")
    g.add_argument("--int8", metavar="DATASET-CONFIG", default=None,
                   help="also quantize (NNCF), calibrating on this experiment's training set; dotted overrides "
                        "of that config may follow (data.root=DIR)")  # fmt: skip
    p.set_defaults(overrides=[])  # key=value arguments after the flags (cli.parse_args collects them)
    g.add_argument("--calib-clips", type=_positive_int, default=32)
    g.add_argument("--max-drop", type=_non_negative, default=1.0, help="allowed top-1 drop of int8 in points")
    g.add_argument("--eval-limit", type=_positive_int, default=None, help="evaluate int8 on at most this many clips")


def _fail(message: str, code: int = 2) -> int:
    from sevnet.display import printable

    print(f"sevnet stream: error: {printable(message)}", file=sys.stderr)
    return code


def _check_outputs(args: argparse.Namespace) -> str | None:
    """Output paths refused before anything is loaded or streamed, so a typo costs no stream."""
    from sevnet.deploy.render import OVERLAY_SUFFIXES

    if args.overrides and not args.int8:
        return f"{args.overrides[0]}: key=value overrides apply only to --int8's config"
    outputs = {k: getattr(args, k) for k in ("overlay", "csv", "plot") if getattr(args, k)}
    if args.export and outputs:
        return f"--{', --'.join(outputs)} {'does' if len(outputs) == 1 else 'do'} not apply with --export"
    given = [k for k in ("smooth", "threshold", "min_duration") if getattr(args, k) is not None]
    tuning = [f"--{k.replace('_', '-')}" for k in given]
    if tuning and not (args.csv or args.plot):
        return f"{', '.join(tuning)} {'needs' if len(tuning) == 1 else 'need'} --csv or --plot (a timeline)"
    for option, value in outputs.items():
        path = Path(value)
        if path.is_dir():
            return f"--{option} {value}: is a directory"
        if not path.parent.is_dir():
            return f"--{option} {value}: folder {path.parent} does not exist"
        if args.source and Path(args.source).exists() and path.resolve() == Path(args.source).resolve():
            return f"--{option} {value}: is the source"
    if args.overlay and Path(args.overlay).suffix.lower() not in OVERLAY_SUFFIXES:
        return f"--overlay {args.overlay}: the file must end in {', '.join(OVERLAY_SUFFIXES)}"
    return None


def _export(args: argparse.Namespace) -> int:
    from sevnet.engine import load_config
    from sevnet.streaming.export import export_stream_checkpoint
    from sevnet.streaming.quantize import quantize_stream_checkpoint

    if args.int8:
        # the first key=value lands in the unused source position; the rest in args.overrides
        overrides = [args.source] * bool(args.source and "=" in args.source) + list(args.overrides)
        cfg = load_config(args.int8, overrides)
        report = quantize_stream_checkpoint(args.checkpoint, cfg, args.out, args.calib_clips,
                                            args.max_drop, args.eval_limit, args.window, args.flat4d)  # fmt: skip
    else:
        report = export_stream_checkpoint(args.checkpoint, args.export, args.out, args.window, args.flat4d)
    print(json.dumps(report, indent=2))
    return 0


def _runner(args: argparse.Namespace, workdir: str) -> tuple[Any, dict[str, Any]]:
    from sevnet.deploy.runtime import ModelFileError
    from sevnet.engine.card import ModelCard
    from sevnet.streaming.export import export_stream_checkpoint
    from sevnet.streaming.runners import load_step_runner

    if args.model:
        runner, meta = load_step_runner(model_file=args.model, threads=args.threads)
        streaming = ModelCard.from_meta(meta).streaming  # load_step_runner refuses a sidecar without one
        window = streaming.window if streaming else None
        if args.window and args.window != window:
            raise ModelFileError(f"{args.model}: exported with window {window}; re-export it")
        return runner, meta
    if args.backend == "torch":
        return load_step_runner(args.checkpoint, window=args.window, device=args.device)
    print(f"exporting the step model for {args.backend} (checked against PyTorch)...", file=sys.stderr)
    report = export_stream_checkpoint(args.checkpoint, args.backend, f"{workdir}/step", args.window)
    return load_step_runner(model_file=report.get("openvino", report["onnx"]), threads=args.threads)


class _Printer:
    """JSON lines, or one line rewritten in place (``--live``)."""

    def __init__(self, live: bool) -> None:
        self.live, self.width = live, shutil.get_terminal_size((100, 20)).columns - 1

    def __call__(self, r: dict[str, Any]) -> None:
        from sevnet.display import printable

        if not self.live:
            print(json.dumps(r), flush=True)
            return
        top = "  ".join(f"{printable(name)} {score:.0%}" for name, score in r["top"][:3])
        line = f"frame {r['frame']:>6}  {r['time']:8.2f}s  {top}  | {r['step_ms']:.1f} ms/frame"
        print("\r" + line[: self.width].ljust(self.width), end="", flush=True)

    def summary(self, s: dict[str, Any]) -> None:
        if not self.live:
            print(json.dumps({"summary": s}), flush=True)
            return
        print()
        step = s.get("step_ms", {})
        top = ", ".join(f"{name} {score:.1%}" for name, score in s["top"])
        print(f"{s['ended']}: {s['frames_fed']} frames fed of {s['frames_decoded']} decoded "
              f"({s['media_seconds']:.1f}s of media in {s['wall_seconds']:.1f}s), step {step.get('mean', 0):.2f} ms "
              f"mean / {step.get('p95', 0):.2f} ms p95; top: {top}")  # fmt: skip
        written = [s[k] + (f" ({s['overlay_frames']} frames)" if k == "overlay" else "")
                   for k in ("overlay", "csv", "plot") if s.get(k)]  # fmt: skip
        if written:
            print(f"wrote {', '.join(written)}")


class _Overlay:
    """``--overlay``: every decoded frame, at the source's frame rate, with the newest top-k (at most
    5) drawn on it; frames before the first prediction say "warming up"."""

    def __init__(self, path: str, stats: Any, topk: int) -> None:
        self.path, self.stats, self.topk = path, stats, min(topk, 5)
        self.writer: Any = None

    def __call__(self, index: int, t: float, rgb: Any) -> None:
        from sevnet.deploy.render import OverlayWriter
        from sevnet.display import printable

        if self.writer is None:
            self.writer = OverlayWriter(self.path, self.stats.fps)
        top = [f"{printable(name)} {score:.0%}" for name, score in self.stats.top[: self.topk]]
        text = "\n".join([f"{t:.2f}s  frame {index}", *(top or ["warming up"])])
        self.writer.write(rgb, text, pts=round(t * float(self.writer.rate)))

    def close(self) -> dict[str, Any]:
        """Finish the file (however the stream ended) and say what was written."""
        path = self.writer.close() if self.writer is not None else None
        return {"overlay": str(path) if path else None, "overlay_frames": self.writer.frames if path else 0}


class _Results:
    """``--csv`` / ``--plot``: each result's time and every class's score, made into a timeline at the
    end (one score vector per result: ``--every`` bounds the memory of a long stream)."""

    def __init__(self, args: argparse.Namespace, stats: Any, printer: _Printer) -> None:
        self.args, self.stats, self.printer = args, stats, printer
        self.times: list[float] = []
        self.scores: list[Any] = []

    def __call__(self, r: dict[str, Any]) -> None:
        self.printer(r)
        self.times.append(r["time"])
        self.scores.append(self.stats.scores.astype("float32"))

    def write(self, meta: dict[str, Any]) -> dict[str, Any]:
        from sevnet.deploy.live import results_timeline
        from sevnet.deploy.render import plot_timeline, write_csv
        from sevnet.engine.card import ModelCard

        a = self.args
        card = ModelCard.from_meta(meta)
        tl = results_timeline(self.stats, list(card.class_names), self.times, self.scores, a.smooth or 3,
                              a.threshold, a.min_duration or 0.0, bool(card.multi_label))  # fmt: skip
        out: dict[str, Any] = {"segments": [seg.to_dict() for seg in tl.segments]}
        if a.csv:
            out["csv"] = str(write_csv([tl], a.csv, a.topk))
        if a.plot and self.times:
            out["plot"] = str(plot_timeline(tl, a.plot))
        elif a.plot:
            print("sevnet stream: no result to plot (--plot not written)", file=sys.stderr)
        return out


def run(args: argparse.Namespace) -> int:
    """Errors before the first frame (bad model, unopenable source) are SevnetErrors: ``cli.main``
    prints them and exits 2. A source failing mid-way ends with the summary and exit 1; Ctrl-C
    while streaming ends with the summary and exit 0, before it (loading, exporting) with 130."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\nsevnet stream: interrupted before streaming started", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import torch

    from sevnet.deploy.live import SourceError, StreamStats, run_stream
    from sevnet.engine.card import ModelCard

    if not args.checkpoint and not args.model:
        return _fail("give --checkpoint or --model")
    if args.export and not args.checkpoint:
        return _fail("--export needs --checkpoint")
    if not args.export and not args.source:
        return _fail("give a SOURCE (video file, camera index or URL), or --export")
    if problem := _check_outputs(args):
        return _fail(problem)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sevnet-stream-") as workdir:
        if args.export:
            return _export(args)
        runner, meta = _runner(args, workdir)
        clip = ModelCard.from_meta(meta).clip
        stride = args.stride or (clip.frame_stride if clip.sampling == "dense" else 1)
        stats, printer = StreamStats(args.source, stride=max(1, stride)), _Printer(args.live)
        overlay = _Overlay(args.overlay, stats, args.topk) if args.overlay else None
        results = _Results(args, stats, printer) if args.csv or args.plot else None
        code, written = 0, {}
        try:
            run_stream(runner, meta, args.source, stats, results or printer, every=max(1, args.every),
                       topk=args.topk, input_format=args.input_format, realtime=args.realtime, timeout=args.timeout,
                       on_frame=overlay)  # fmt: skip
        except KeyboardInterrupt:
            stats.ended = "interrupted"
        except SourceError as err:
            if stats.decoded == 0:
                raise
            stats.ended, code = f"error: {err}", 1
            print(f"\nsevnet stream: error: {err}", file=sys.stderr)
        finally:  # the overlay is finished and renamed even when an unexpected error ends the stream
            written = overlay.close() if overlay is not None else {}
        if results is not None:
            written |= results.write(meta)
        printer.summary(stats.summary() | written)
        return code

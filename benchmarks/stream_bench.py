"""Streaming cost: per-frame step latency vs clip latency / T, causal SEVNet-XS and -S at their
reference sizes, batch 1, on PyTorch eager, ONNX Runtime, OpenVINO float32 and OpenVINO int8.

A clip model re-runs its whole T-frame window for each new prediction; the step model runs one
frame with its carried state. "step / (clip/T)" near 1 means streaming costs what the clip model
costs per frame; the clip model's cost per *prediction* is the full clip column.

The int8 models are calibrated on random frames: this script measures speed only (accuracy after
int8: `sevnet stream --export openvino --int8 CONFIG` on a trained model). Step latency is the
median over many consecutive steps of one stream (state carried, as in use), timed in rounds
interleaved with the clips. The PyTorch step is ``Stream``'s (BN folded into the convs, one frame
on 4-D ops); the PyTorch clip is the model's own forward (eval mode, inference mode).

    python benchmarks/stream_bench.py [--models sevnet_xs sevnet_s] [--repeats 5] [--no-int8]
        [--backends pytorch pytorch-plain onnxruntime openvino] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sevnet.deploy.export import export_onnx, export_openvino
from sevnet.deploy.quantize import quantize_openvino
from sevnet.deploy.runtime import onnx_runner, openvino_runner, torch_runner
from sevnet.models import create_model, model_info
from sevnet.streaming import init_state
from sevnet.streaming.export import StepModule, export_stream_model, torch_step_fn
from sevnet.streaming.quantize import calibration_feeds, running_sum_nodes
from sevnet.streaming.runners import (
    OpenVINOStateRunner,
    StepRunner,
    compile_stateful,
    eager_step_fn,
    onnx_step_fn,
    openvino_step_fn,
)
from sevnet.streaming.state import io_names
from sevnet.timing import wall_seconds

BACKENDS = ["pytorch", "pytorch-plain", "onnxruntime", "openvino"]
DEFAULT_BACKENDS = ["pytorch", "onnxruntime", "openvino"]


def latencies(clip_run: Callable, step: StepRunner, clip: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median seconds per clip and per one-frame step, timed interleaved: ``repeats`` rounds of one
    clip then T consecutive steps of one stream (state carried), after one untimed round, so a
    shared machine's load drifts into both alike."""
    step.reset()
    t = clip.shape[2]
    clips, steps = [], []
    for r in range(repeats + 1):
        clips += wall_seconds(lambda: clip_run(clip), 1, warmup=0)
        for i in range(t):
            steps += wall_seconds(lambda i=i: step.frame(clip[:, :, i]), 1, warmup=0)
        if r == 0:
            clips, steps = [], []
    return statistics.median(clips), statistics.median(steps)


def backends(
    model: torch.nn.Module, name: str, tmp: Path, shape: tuple[int, int, int], args: argparse.Namespace
) -> dict:
    """{backend: (clip runner, step runner)}; each exported step is checked against PyTorch on export."""
    _, layout = init_state(model, shape[1:])
    out = {}
    if "pytorch" in args.backends:  # the clip: the model's own forward; the step: Stream's (BN folded, 4-D ops)
        out["pytorch eager"] = (torch_runner(model), StepRunner(eager_step_fn(model), layout, False))
    if "pytorch-plain" in args.backends:  # the plain ``step`` (what exports are checked against), for comparison
        plain = torch_step_fn(StepModule(model, layout))
        out["pytorch eager, plain step"] = (torch_runner(model), StepRunner(plain, layout, False))
    if {"onnxruntime", "openvino"} & set(args.backends):
        out |= exported(model, name, tmp, shape, layout, args)
    return out


def exported(
    model: torch.nn.Module, name: str, tmp: Path, shape: tuple[int, int, int], layout: list, args: argparse.Namespace
) -> dict:
    """ONNX Runtime and OpenVINO (fp32, int8) runners of the exported clip and step models."""
    h, w = shape[1:]
    threads = args.threads
    clip_onnx = export_onnx(model, tmp / f"{name}-clip.onnx", shape)
    clip_xml = export_openvino(clip_onnx, tmp / f"{name}-clip.xml")
    report = export_stream_model(model, tmp / f"{name}-step", (h, w), "openvino")
    errors = f"ONNX {report['onnx_max_rel_error']:.1e}, OpenVINO {report['openvino_max_rel_error']:.1e}"
    print(f"{name}: step exported; max relative error vs PyTorch over {report['check_steps']} steps: {errors}")
    step_xml = Path(report["openvino"])
    out = {}
    if "onnxruntime" in args.backends:
        out["onnxruntime fp32"] = (
            onnx_runner(clip_onnx, threads),
            StepRunner(onnx_step_fn(report["onnx"], threads), layout, False),
        )
    if "openvino" not in args.backends:
        return out
    # the step with its state inside the request (what `sevnet stream` runs); explicit state for comparison
    out["openvino fp32"] = (
        openvino_runner(clip_xml, threads),
        OpenVINOStateRunner(step_xml, layout, False, threads, (h, w)),
    )
    out["openvino fp32, explicit state"] = (
        openvino_runner(clip_xml, threads),
        StepRunner(openvino_step_fn(step_xml, threads), layout, False),
    )
    if not args.no_int8:
        clip8, step8 = int8_models(clip_xml, step_xml, name, tmp, shape, layout)
        out["openvino int8"] = (
            openvino_runner(clip8, threads),
            OpenVINOStateRunner(step8, layout, False, threads, (h, w)),
        )
        out["openvino int8, explicit state"] = (
            openvino_runner(clip8, threads),
            StepRunner(openvino_step_fn(step8, threads), layout, False),
        )
    return out


def int8_models(
    clip_xml: Path, step_xml: Path, name: str, tmp: Path, shape: tuple[int, int, int], layout: list
) -> tuple[Path, Path]:
    """Clip and step quantized with NNCF, calibrated on random clips (speed only)."""
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, *shape)).astype(np.float32) for _ in range(4)]
    clip8 = quantize_openvino(clip_xml, calib, tmp / f"{name}-clip-int8.xml")
    fp32_step = StepRunner(openvino_step_fn(step_xml), layout, False)
    feeds = calibration_feeds(fp32_step, calib, io_names(layout)[0])
    step8 = quantize_openvino(step_xml, feeds, tmp / f"{name}-step-int8.xml", ignored_scope=running_sum_nodes)
    return clip8, step8


def concurrent_fps(path: Path, layout: list, frame_size: tuple[int, int], streams: int, frames: int = 200) -> float:
    """Frames/s over ``streams`` concurrent streams (several cameras at once) through one int8 step model:
    one infer request per stream, each carrying its own state, all started together for every frame;
    OpenVINO runs ``streams`` requests in parallel on one thread each."""
    config = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams, "PERFORMANCE_HINT": "THROUGHPUT"}
    compiled = compile_stateful(path, layout, False, (1, 3, 1, *frame_size), config)
    requests = [compiled.create_infer_request() for _ in range(streams)]
    rng = np.random.default_rng(2)
    feed = [rng.standard_normal((1, 3, 1, *frame_size)).astype(np.float32) for _ in range(streams)]
    for r in requests:
        r.reset_state()
    times = []
    for i in range(frames + 10):
        start = time.perf_counter()
        for r, f in zip(requests, feed):
            r.start_async({"frames": f})
        for r in requests:
            r.wait()
        if i >= 10:  # the first steps allocate
            times.append(time.perf_counter() - start)
    return streams / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sevnet_xs", "sevnet_s"])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of one clip + T one-frame steps")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=DEFAULT_BACKENDS,
                        help="openvino includes int8; pytorch-plain: the plain step function")  # fmt: skip
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every backend (default: all)")
    parser.add_argument("--streams", type=int, nargs="*", default=[],
                        help="also: total frames/s of this many concurrent streams through the int8 step")  # fmt: skip
    parser.add_argument("--stem-temporal-kernel", type=int, default=None, help="override the model default")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU, {torch.get_num_threads()} threads, batch 1; {args.repeats} rounds of one clip of T frames then T "
          "consecutive one-frame steps; medians\n")  # fmt: skip
    rows = []
    concurrent = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            extra = {} if args.stem_temporal_kernel is None else {"stem_temporal_kernel": args.stem_temporal_kernel}
            model = create_model(name, causal=True, **extra).eval()
            t, h, w = model_info(name).reference_input
            cfg = model.cfg
            print(f"{name}: causal, stem temporal kernel {cfg.stem_temporal_kernel}, SE ratio {cfg.se_ratio}, "
                  f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)  # fmt: skip
            clip = np.random.default_rng(1).standard_normal((1, 3, t, h, w)).astype(np.float32)
            runners = backends(model, name, Path(tmp), (t, h, w), args)
            for backend, (clip_run, step_run) in runners.items():
                clip_s, step_s = latencies(clip_run, step_run, clip, args.repeats)
                rows.append((name, f"{t}x{h}x{w}", backend, clip_s * 1e3, clip_s * 1e3 / t, step_s * 1e3))
                print_row(rows[-1])
            if "openvino int8" in runners:  # the int8 step model file, driven by several streams at once
                step8 = runners["openvino int8"][1]
                concurrent += [(name, n, concurrent_fps(step8.path, step8.layout, (h, w), n)) for n in args.streams]
    print("\n| model | input | backend | clip (T frames) ms | clip / T ms | step ms | step / (clip/T) | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size, backend, clip_ms, per_frame, step_ms in rows:
        print(f"| {name} causal | {size} | {backend} | {clip_ms:.1f} | {per_frame:.2f} | {step_ms:.2f} | "
              f"{step_ms / per_frame:.2f}x | {1e3 / step_ms:.0f} |")  # fmt: skip
    if concurrent:
        print("\n| model | concurrent streams (OpenVINO int8 step, one thread each) | total frames/s | per stream |")
        print("|---|---|---|---|")
        for name, n, fps in concurrent:
            print(f"| {name} causal | {n} | {fps:.0f} | {fps / n:.0f} |")


def print_row(row: tuple) -> None:
    name, size, backend, clip_ms, per_frame, step_ms = row
    ratio = f"({step_ms / per_frame:.2f}x, {1e3 / step_ms:.0f} frames/s)"
    print(f"{name:<10}{size:>12}  {backend:<26} clip {clip_ms:8.1f} ms  clip/T {per_frame:7.2f} ms  "
          f"step {step_ms:7.2f} ms  {ratio}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

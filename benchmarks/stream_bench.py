"""Streaming cost: per-frame step latency vs clip latency / T, causal SEVNet-XS and -S at their
reference sizes, batch 1, on PyTorch eager, ONNX Runtime, OpenVINO float32 and OpenVINO int8.

A clip model re-runs its whole T-frame window for each new prediction; the step model runs one
frame with its carried state. "step / (clip/T)" near 1 means streaming costs what the clip model
costs per frame; the clip model's cost per *prediction* is the full clip column.

The int8 models are calibrated on random frames: this script measures speed only (accuracy after
int8: `sevnet stream --export openvino --int8 CONFIG` on a trained model). Step latency is the
median over many consecutive steps of one stream (state carried, as in use).

    python benchmarks/stream_bench.py [--models sevnet_xs sevnet_s] [--repeats 5] [--no-int8]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from sevnet.deploy.export import export_onnx, export_openvino
from sevnet.deploy.quantize import quantize_openvino
from sevnet.deploy.runtime import onnx_runner, openvino_runner, torch_runner
from sevnet.deploy.stream_export import (
    StepModule,
    StepRunner,
    calibration_feeds,
    export_stream_model,
    io_names,
    onnx_step_fn,
    openvino_step_fn,
    running_sum_nodes,
    torch_step_fn,
)
from sevnet.models import create_model, model_info
from sevnet.streaming import init_state
from sevnet.timing import median_seconds


def step_latency(runner: StepRunner, frames: np.ndarray, repeats: int) -> float:
    """Median seconds per step over ``repeats`` x T consecutive one-frame steps (after a warm-up clip)."""
    runner.reset()
    t = frames.shape[2]
    for i in range(t):
        runner.frame(frames[:, :, i])
    counter = iter(range(10**9))
    return median_seconds(lambda: runner.frame(frames[:, :, next(counter) % t]), repeats * t, warmup=0)


def backends(
    model: torch.nn.Module, name: str, tmp: Path, shape: tuple[int, int, int], int8: bool, threads: int | None
) -> dict:
    """{backend: (clip runner, step runner)}; each exported step is checked against PyTorch on export."""
    t, h, w = shape
    _, layout = init_state(model, (h, w))
    out = {"pytorch eager": (torch_runner(model), StepRunner(torch_step_fn(StepModule(model, layout)), layout, False))}
    clip_onnx = export_onnx(model, tmp / f"{name}-clip.onnx", shape)
    clip_xml = export_openvino(clip_onnx, tmp / f"{name}-clip.xml")
    report = export_stream_model(model, tmp / f"{name}-step", (h, w), "openvino")
    errors = f"ONNX {report['onnx_max_rel_error']:.1e}, OpenVINO {report['openvino_max_rel_error']:.1e}"
    print(f"{name}: step exported; max relative error vs PyTorch over {report['check_steps']} steps: {errors}")
    step_xml = Path(report["openvino"])
    onnx_step = StepRunner(onnx_step_fn(report["onnx"], threads), layout, False)
    out["onnxruntime fp32"] = (onnx_runner(clip_onnx, threads), onnx_step)
    out["openvino fp32"] = (
        openvino_runner(clip_xml, threads),
        StepRunner(openvino_step_fn(step_xml, threads), layout, False),
    )
    if int8:
        rng = np.random.default_rng(0)
        calib = [rng.standard_normal((1, 3, t, h, w)).astype(np.float32) for _ in range(4)]
        clip8 = quantize_openvino(clip_xml, calib, tmp / f"{name}-clip-int8.xml")
        fp32_step = StepRunner(openvino_step_fn(step_xml), layout, False)
        feeds = calibration_feeds(fp32_step, calib, io_names(layout)[0])
        step8 = quantize_openvino(step_xml, feeds, tmp / f"{name}-step-int8.xml", ignored_scope=running_sum_nodes)
        out["openvino int8"] = (
            openvino_runner(clip8, threads),
            StepRunner(openvino_step_fn(step8, threads), layout, False),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sevnet_xs", "sevnet_s"])
    parser.add_argument("--repeats", type=int, default=5, help="clip timings; steps are timed repeats x T times")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every backend (default: all)")
    parser.add_argument("--stem-temporal-kernel", type=int, default=None, help="override the model default")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU, {torch.get_num_threads()} threads, batch 1; clip = median of {args.repeats} clips of T frames; "
          f"step = median of {args.repeats} x T consecutive one-frame steps\n")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            extra = {} if args.stem_temporal_kernel is None else {"stem_temporal_kernel": args.stem_temporal_kernel}
            model = create_model(name, causal=True, **extra).eval()
            t, h, w = model_info(name).reference_input
            cfg = model.cfg
            print(f"{name}: causal, stem temporal kernel {cfg.stem_temporal_kernel}, SE ratio {cfg.se_ratio}, "
                  f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)  # fmt: skip
            clip = np.random.default_rng(1).standard_normal((1, 3, t, h, w)).astype(np.float32)
            for backend, (clip_run, step_run) in backends(
                model, name, Path(tmp), (t, h, w), not args.no_int8, args.threads
            ).items():
                clip_s = median_seconds(lambda run=clip_run, x=clip: run(x), args.repeats)
                step_s = step_latency(step_run, clip, args.repeats)
                rows.append((name, f"{t}x{h}x{w}", backend, clip_s * 1e3, clip_s * 1e3 / t, step_s * 1e3))
                print_row(rows[-1])
    print("\n| model | input | backend | clip (T frames) ms | clip / T ms | step ms | step / (clip/T) | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size, backend, clip_ms, per_frame, step_ms in rows:
        print(f"| {name} causal | {size} | {backend} | {clip_ms:.1f} | {per_frame:.2f} | {step_ms:.2f} | "
              f"{step_ms / per_frame:.2f}x | {1e3 / step_ms:.0f} |")  # fmt: skip


def print_row(row: tuple) -> None:
    name, size, backend, clip_ms, per_frame, step_ms = row
    ratio = f"({step_ms / per_frame:.2f}x, {1e3 / step_ms:.0f} frames/s)"
    print(f"{name:<10}{size:>12}  {backend:<18} clip {clip_ms:8.1f} ms  clip/T {per_frame:7.2f} ms  "
          f"step {step_ms:7.2f} ms  {ratio}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

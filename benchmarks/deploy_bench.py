"""Deployment backends side by side: latency (batch 1) and clips/s (batch 8) of SEVNet-S and
SEVNet-M, with X3D-S and X3D-M as peers, through PyTorch eager, torch.compile, ONNX Runtime,
OpenVINO float32 and OpenVINO int8 (NNCF), all in one run on this CPU.

The int8 models here are calibrated on random clips: this script measures speed. Accuracy after
int8 is measured by `sevnet quantize` on a trained model (see docs/deployment.md).

    python benchmarks/deploy_bench.py [--models sevnet_s sevnet_m x3d_s x3d_m] [--repeats 7]
"""

from __future__ import annotations

import os

# Inductor's pool of compile worker processes stays alive after compiling and, on a 2-core
# machine, measurably slows every backend timed after it (eager included); compile in-process.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from sevnet.deploy.export import export_onnx, export_openvino
from sevnet.deploy.quantize import quantize_openvino
from sevnet.deploy.runtime import onnx_runner, openvino_runner, torch_runner
from sevnet.models import count_gmacs, create_model, list_models, model_info
from sevnet.timing import median_seconds


def measure(run, x1: np.ndarray, xb: np.ndarray, repeats: int) -> tuple[float, float]:
    """(median batch-1 latency in s, clips/s at the batch of ``xb``)."""
    latency = median_seconds(lambda: run(x1), repeats)
    return latency, len(xb) / median_seconds(lambda: run(xb), max(2, repeats // 2))


def compiled_runner(model: torch.nn.Module):
    compiled = torch.compile(model)

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return compiled(torch.from_numpy(x)).numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sevnet_s", "x3d_s", "sevnet_m", "x3d_m"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    names = [m for m in args.models if m in list_models()]
    print(f"CPU, {torch.get_num_threads()} threads; latency = median of {args.repeats} at batch 1; "
          f"clips/s at batch {args.batch}\n")  # fmt: skip
    header = f"{'model':<10}{'input':>12}{'GMACs':>7}  {'backend':<18}{'latency ms':>11}{'clips/s':>9}{'vs eager':>10}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = create_model(name).eval()
            t, h, w = model_info(name).reference_input
            shape = (3, t, h, w)
            x1 = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
            xb = np.random.default_rng(1).standard_normal((args.batch, *shape)).astype(np.float32)
            # Eager first, in a process no other runtime has touched yet: it is the baseline.
            rows = [("pytorch eager", *measure(torch_runner(model), x1, xb, args.repeats))]
            onnx_path = export_onnx(model, Path(tmp) / f"{name}.onnx", (t, h, w))
            xml = export_openvino(onnx_path, Path(tmp) / f"{name}.xml")
            calib = [np.random.default_rng(i).standard_normal((1, *shape)).astype(np.float32) for i in range(8)]
            int8 = quantize_openvino(xml, calib, Path(tmp) / f"{name}-int8.xml")
            backends = {}
            if not args.no_compile:
                try:
                    run = compiled_runner(model)
                    run(x1)
                    backends["torch.compile"] = run
                except Exception as err:
                    print(f"{name}: torch.compile failed: {type(err).__name__}: {str(err)[:120]}")
            backends["onnxruntime fp32"] = onnx_runner(onnx_path)
            # One synchronous request per call (LATENCY hint): a THROUGHPUT-hint model needs several
            # requests in flight to use its streams, which a batch-at-a-time caller does not have.
            backends["openvino fp32"] = openvino_runner(xml)
            backends["openvino int8"] = openvino_runner(int8)
            rows += [(backend, *measure(run, x1, xb, args.repeats)) for backend, run in backends.items()]
            gmacs = count_gmacs(model, (1, *shape))
            eager_rate = rows[0][2]
            for backend, latency, rate in rows:
                print(f"{name:<10}{f'{t}x{h}x{w}':>12}{gmacs:>7.2f}  {backend:<18}{latency * 1e3:>11.1f}{rate:>9.1f}"
                      f"{rate / eager_rate:>9.2f}x", flush=True)  # fmt: skip
            print()
    print("GMACs: multiply-adds at each model's reference input. int8: NNCF post-training, random calibration.")


if __name__ == "__main__":
    main()

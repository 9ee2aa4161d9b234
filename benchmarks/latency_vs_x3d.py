"""CPU latency and throughput of SEVNet vs X3D at matched GMACs, side by side in one run.

Each pair is timed interleaved (A, B, A, B, ...) so that drift of this shared machine hits both;
the table reports medians, clips/s at batch 1 and the SEVNet/X3D ratio.

    python benchmarks/latency_vs_x3d.py [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sevnet.models import count_gmacs, create_model, list_models, model_info

PAIRS = [("sevnet_xs", "x3d_xs"), ("sevnet_s", "x3d_s"), ("sevnet_m", "x3d_m")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "x3d_s" not in list_models():
        raise SystemExit("PyTorchVideo is not installed (scripts/setup.sh installs it): no X3D to compare with")
    print(f"batch 1, float32, eager, {torch.get_num_threads()} threads, median of {args.repeats} (interleaved)\n")
    print(f"{'model':<11}{'input':>12}{'GMACs*':>8}{'latency ms':>12}{'clips/s':>9}   ratio vs X3D (clips/s)")
    for ours, peer in PAIRS:
        models, inputs, times = {}, {}, {ours: [], peer: []}
        for name in (ours, peer):
            models[name] = create_model(name).eval()
            inputs[name] = torch.randn(1, 3, *model_info(name).reference_input)
        with torch.inference_mode():
            for name in (ours, peer):
                models[name](inputs[name])  # warm-up
            for _ in range(args.repeats):
                for name in (ours, peer):
                    t0 = time.perf_counter()
                    models[name](inputs[name])
                    times[name].append(time.perf_counter() - t0)
        med = {n: statistics.median(t) for n, t in times.items()}
        for name in (ours, peer):
            t, h, w = model_info(name).reference_input
            gmacs = count_gmacs(models[name], tuple(inputs[name].shape))
            ratio = f"{med[peer] / med[ours]:.2f}x" if name == ours else ""
            print(f"{name:<11}{f'{t}x{h}x{w}':>12}{gmacs:>8.3f}{med[name] * 1e3:>12.1f}{1 / med[name]:>9.1f}   {ratio}")
    print("\n* GMACs: multiply-adds (the 'FLOPs' of video papers), at each model's reference input.")


if __name__ == "__main__":
    main()

"""Which memory layout and precision train faster on this CPU: NCDHW or channels_last_3d
(``train.channels_last``), float32 or bfloat16 autocast (``train.amp``)?

Training clips/s (forward, cross-entropy, backward, AdamW) of each model at its training clip size,
NCDHW, channels-last, and channels-last under ``torch.autocast("cpu", torch.bfloat16)`` in one run,
interleaved over ``--rounds`` rounds (a shared machine's load drifts); the table gives the median of
each and the ratios. ``train.channels_last: auto`` and ``train.amp: auto`` turn them on where this
table says they pay (bf16 only on a CPU with AMX: elsewhere it is emulated).

    python benchmarks/train_layout.py [--threads 2] [--rounds 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from sevnet.models import create_model

FOLDER = {"stem_temporal_kernel": 3, "stem_temporal_init": "difference", "zero_init_last": False,
          "depths": [1, 2, 2, 1], "motion_stages": [1]}  # fmt: skip
# label -> (model name, overrides, batch, clip T x H x W): the own-videos config's model and the sizes' references
CASES: dict[str, tuple[str, dict[str, Any], int, tuple[int, int, int]]] = {
    "folder config (XS 1-2-2-1 + stem conv + motion unit) 8x64x64": ("sevnet_xs", FOLDER, 16, (8, 64, 64)),
    "folder config without the motion unit 8x64x64": ("sevnet_xs", FOLDER | {"motion_stages": []}, 16, (8, 64, 64)),
    "sevnet_xs 8x112x112": ("sevnet_xs", {}, 8, (8, 112, 112)),
    "sevnet_s 8x160x160": ("sevnet_s", {}, 4, (8, 160, 160)),
    "sevnet_m 16x224x224": ("sevnet_m", {}, 2, (16, 224, 224)),
    "x3d_xs 4x160x160": ("x3d_xs", {}, 4, (4, 160, 160)),
    "sevnet_xs no zero-init 8x112x112": ("sevnet_xs", {"zero_init_last": False}, 8, (8, 112, 112)),
    "sevnet_xs 8x64x64": ("sevnet_xs", {}, 16, (8, 64, 64)),
    "sevnet_xs + stem conv 8x112x112": ("sevnet_xs", {"stem_temporal_kernel": 3}, 8, (8, 112, 112)),
}


def trainer(name: str, overrides: dict, batch: int, size: tuple[int, int, int], channels_last: bool, bf16: bool):
    """A zero-argument training step of a fresh model on a fixed random batch."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=12, **overrides).train()
    x = torch.randn(batch, 3, *size)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last_3d), x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.arange(batch) % 12
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()  # first-call allocations and kernel selection
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per layout and round")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.rounds} interleaved rounds")
    print("\n| model, clip | batch | NCDHW clips/s | channels-last clips/s | + bf16 clips/s | channels-last / NCDHW "
          "| bf16 / float32 (channels-last) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label in args.cases:
        name, overrides, batch, size = CASES[label]
        try:
            modes = ((False, False), (True, False), (True, True))  # (channels-last, bf16)
            steps = {mode: trainer(name, overrides, batch, size, *mode) for mode in modes}
        except ImportError as exc:  # a peer whose package is not installed
            print(f"| {label} | skipped: {exc} |")
            continue
        rates: dict[tuple[bool, bool], list[float]] = {mode: [] for mode in steps}
        for _ in range(args.rounds):
            for mode, step in steps.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                rates[mode].append(batch * args.steps / (time.perf_counter() - start))
        nc, cl, bf = (statistics.median(rates[mode]) for mode in modes)
        print(f"| {label} | {batch} | {nc:.1f} | {cl:.1f} | {bf:.1f} | {cl / nc:.2f}x | {bf / cl:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

"""Wall-clock measurement shared by `sevnet profile`, `sevnet quantize` and the benchmarks.

Medians after untimed warm-up runs: a shared CPU has outliers, and the first call of any runtime
pays for allocation and kernel selection.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def wall_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall time of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return statistics.median(wall_seconds(fn, repeats, warmup))


def train_steps_per_second(model: nn.Module, clips: torch.Tensor, targets: torch.Tensor, steps: int = 3) -> float:
    """Training steps/s (forward, cross-entropy, backward, SGD with momentum) after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(clips), targets).backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)

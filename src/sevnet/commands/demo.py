"""Train SEVNet-XS from scratch on the built-in temporal-reasoning benchmark (CPU, minutes),
evaluate it, show that it uses temporal order, and write a report folder."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="reports/demo", help="report folder (default reports/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 8)")
    p.add_argument("--minutes", type=float, default=0.0, help="stop training after this budget (0 = no limit)")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds) that exercises every step")
    p.add_argument(
        "--device", default="auto", help="auto (a GPU when PyTorch sees one, else the CPU) | cpu | cuda | cuda:N"
    )


def run(args: argparse.Namespace) -> int:
    from sevnet.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, epochs=args.epochs, minutes=args.minutes, device=args.device)
    return 0

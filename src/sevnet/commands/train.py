"""Train a model from a config file; ``key=value`` arguments override the file.

Runs as one process, or under ``torchrun --nproc_per_node N`` as DDP (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML: a path or a shipped name (sevnet configs lists them)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=10 data.root=/data/ssv2")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoints/last.safetensors")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run already in train.out_dir (refused without it)"
    )
    p.add_argument(
        "--allow-changed", metavar="KEYS", default="",
        help="with --resume: config keys (comma-separated; a section name covers its keys) that may differ from "
             "the run's, e.g. train.epochs,train.max_minutes to extend it",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from sevnet.engine import load_config, train
    from sevnet.errors import InputError

    if args.resume and args.overwrite:
        raise InputError("--resume continues the run in train.out_dir and --overwrite replaces it: give one")
    allow = [k.strip() for k in args.allow_changed.split(",") if k.strip()]
    if allow and not args.resume:
        raise InputError("--allow-changed applies to --resume (the keys a resumed run may change)")
    result = train(load_config(args.config, args.overrides), args.resume, args.overwrite, allow)
    if result.metrics:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.metrics.items()}
        print(f"final validation metrics: {shown}")
    for failure in result.eval_errors:
        print(f"evaluation failed after epoch {failure['epoch']}: {failure['error']}", file=sys.stderr)
    print(f"checkpoint: {result.checkpoint}")
    return 0

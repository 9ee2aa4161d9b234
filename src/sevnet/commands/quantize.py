"""Quantize a checkpoint to int8 (OpenVINO NNCF, post-training static) with calibration clips from
the training set of DATASET-CONFIG, and compare float32 and int8 side by side: size, CPU latency,
throughput, accuracy. Fails when int8 loses more than --max-drop points of top-1.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .predict import _positive_int

    p.add_argument("checkpoint", help="a .safetensors checkpoint written by sevnet train")
    p.add_argument(
        "--calib",
        required=True,
        metavar="DATASET-CONFIG",
        help="experiment YAML naming the dataset: a path, a shipped name or the run's config.yaml",
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides of the config, e.g. data.root=/data/ssv2")
    p.add_argument(
        "--calib-clips", type=_positive_int, default=64, help="calibration clips from the training set (>= 1)"
    )
    p.add_argument("--max-drop", type=float, default=1.0, help="allowed top-1 drop in points (default 1.0)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on at most this many clips")
    p.add_argument("--out", default=None, help="output path without suffix (default: beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from sevnet.deploy.quantize import format_quantize_report, quantize_checkpoint
    from sevnet.engine import load_config

    cfg = load_config(args.calib, args.overrides)
    report = quantize_checkpoint(
        args.checkpoint, cfg, args.out, args.calib_clips, args.max_drop, eval_limit=args.eval_limit
    )
    print(json.dumps(report, indent=2) if args.json else format_quantize_report(report))
    return 0

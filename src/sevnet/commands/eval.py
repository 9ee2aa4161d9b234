"""Evaluate a checkpoint: top-1/top-5, mean class accuracy or mAP, with multi-view testing.

Views come from the config: ``data.eval_clips`` temporal clips x ``data.eval_crops`` (1 or 3)
spatial crops, scores averaged. Writes metrics.json and confusion_matrix.png.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", help="experiment YAML, a path or a shipped name (its data section says what to evaluate on)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.eval_clips=10 data.eval_crops=3")
    p.add_argument("--checkpoint", required=True, help="a .safetensors checkpoint written by sevnet train")
    p.add_argument("--out", default=None, help="report folder (default <train.out_dir>/eval)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's train.device)")


def run(args: argparse.Namespace) -> int:
    from sevnet.engine import evaluate, load_config

    cfg = load_config(args.config, args.overrides)
    report = evaluate(cfg, args.checkpoint, args.out, device=args.device or cfg.train.device)
    if report:
        print(json.dumps({k: v for k, v in report.items() if k != "skipped_files"}, indent=2))
    return 0

"""Print parameters, GMACs (multiply-adds), activation memory and CPU latency of models.

Each model is measured at its reference input (the one its FLOPs are usually quoted at) and at a
common input, in one run, so the rows can be compared side by side.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", help="model names (default: SEVNets and every installed peer)")
    p.add_argument("--input", default="16x160x160", help="common input TxHxW (default 16x160x160; 'none' to skip)")
    p.add_argument("--repeats", type=int, default=5, help="timed forward passes per model (min/median/max)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--device", default="cpu", help="where latency is measured: cpu (default) | cuda | cuda:N | auto")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="PNG", help="write a plot: GMACs vs parameters, and latency (min/median/max)")


def run(args: argparse.Namespace) -> int:
    from sevnet.device import describe, resolve_device
    from sevnet.models import list_models
    from sevnet.models.profile import format_table, parse_input, plot_profile, profile_models

    names = args.models or [n for n in list_models() if n != "s3d"]
    common = None if args.input.lower() == "none" else parse_input(args.input)
    device = resolve_device(args.device, key="--device")
    rows = profile_models(names, common, repeats=args.repeats, threads=args.threads, device=device)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_table(rows))
        if device.type != "cpu":
            print(f"(latency measured on {describe(device)}, not on the CPU threads the footnote names)")
    if args.plot:
        plot_profile(rows, args.plot)
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0

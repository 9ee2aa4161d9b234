"""Dataset tools. ``sevnet data check CONFIG|DIR``: read every sample of every split in worker
processes and report the files that are missing, empty, unreadable, truncated, corrupt, too short,
oversized or variable-frame-rate, with the reason. Writes ``report.csv`` and ``exclude.txt`` (train
with ``data.exclude_list=<that file>`` to leave those files out). Exit status: 0 when every file is
clean, 1 when problems were found (the report is still written), 2 on an error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sevnet.data import DataConfig

_MAX_PIXELS = 1920 * 1080  # as sevnet.data.check.DEFAULT_MAX_PIXELS (not imported: --help stays instant)
_EXCLUDE = "missing,empty,unreadable,crashed,truncated,corrupt,too_short,oversized"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_verb", metavar="SUBVERB", required=True)
    c = sub.add_parser(
        "check",
        help="read every sample; report bad files; write report.csv and exclude.txt",
        description=(__doc__ or "").strip(),
    )
    c.add_argument(
        "target",
        metavar="CONFIG|DIR",
        help="an experiment YAML or a shipped config name (its data section), or a folder of class folders",
    )
    c.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.num_frames=16 data.val_fraction=0.1")
    c.add_argument(
        "--out",
        default=None,
        help="report folder (default: data_check/ beside the config, or in the current folder for a DIR)",
    )
    c.add_argument(
        "--max-pixels",
        type=int,
        default=_MAX_PIXELS,
        help=f"frames larger than this (width x height) are 'oversized' (default {_MAX_PIXELS}: Full HD)",
    )
    c.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU cores, at most 8)")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds one file may take before it counts as hung")
    c.add_argument(
        "--exclude",
        default=_EXCLUDE,
        help=f"statuses that go into exclude.txt, comma-separated (default {_EXCLUDE}; add vfr for those too)",
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bar")


USER_ERRORS = (ValueError, FileNotFoundError)  # cli.main reports these (and every SevnetError) in one line


def run(args: argparse.Namespace) -> int:
    return _check(args)


def _data_config(target: Path, overrides: list[str]) -> tuple[DataConfig, Path]:
    """(DataConfig, default report folder) from a config file, or from a folder as format folder."""
    from sevnet.engine.config import load_config

    if target.is_dir():
        dotted = [o if o.startswith("data.") else f"data.{o}" for o in overrides]
        cfg = load_config(None, ["data.format=folder", f"data.root={target}", *dotted])
        return cfg.data, Path.cwd() / "data_check"
    if target.is_file():
        return load_config(target, overrides).data, target.parent / "data_check"
    try:  # a shipped config's name: its report goes to the current folder, not into the installed package
        return load_config(target, overrides).data, Path.cwd() / "data_check"
    except FileNotFoundError as err:
        raise FileNotFoundError(f"no such folder, and {err}") from None


def _check(args: argparse.Namespace) -> int:
    from sevnet.data.check import check_dataset

    cfg, out = _data_config(Path(args.target), list(args.overrides))
    if args.out:
        out = Path(args.out)
    elif Path(cfg.root).resolve() in (out.resolve(), *out.resolve().parents):
        out = out.with_name(".data_check")  # inside the dataset: hidden, so the folder format ignores it
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    exclude = tuple(s.strip() for s in args.exclude.split(",") if s.strip())
    report = check_dataset(
        cfg,
        out,
        max_pixels=args.max_pixels,
        workers=workers,
        exclude=exclude,
        timeout=args.timeout,
        progress=not args.no_progress,
    )
    _print_summary(report)
    return 1 if report.problems else 0


def _print_summary(report: Any, limit: int = 20) -> None:
    splits = {}
    for row in report.rows:
        splits[row["split"]] = splits.get(row["split"], 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items(), key=lambda kv: kv[0] != "ok"))
    per_split = ", ".join(f"{s} {n}" for s, n in splits.items())
    print(f"checked {len(report.rows)} samples ({per_split}): {counts or 'nothing to check'}")
    for note in report.notes:
        print(f"  {note}")
    for row in report.problems[:limit]:
        print(f"  {row['status']:<10} {row['split']:<5} {row['path']}: {row['reason']}")
    if len(report.problems) > limit:
        print(f"  ... and {len(report.problems) - limit} more (see the report)")
    print(f"report: {report.report_path}")
    if report.excluded:
        print(f"exclude list ({len(report.excluded)} files): {report.exclude_path}")
        print(f"  train without them: data.exclude_list={report.exclude_path.resolve()}")

"""Dataset tools. ``sevnet data prepare SRC DST --short-side S``: a copy of the dataset, same layout, that
decodes faster (videos re-encoded, frame images resized; docs/data.md "Preparing a dataset").
``sevnet data check CONFIG|DIR``: read every sample of every split in worker
processes and report the files that are missing, empty, unreadable, truncated, corrupt, too short,
oversized or variable-frame-rate, with the reason. Writes ``report.csv`` and ``exclude.txt`` (train
with ``data.exclude_list=<that file>`` to leave those files out). Exit status: 0 when every file is
clean, 1 when problems were found (the report is still written), 2 on an error.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sevnet.data import DataConfig

_MAX_PIXELS = 1920 * 1080  # as sevnet.data.check.DEFAULT_MAX_PIXELS (not imported: --help stays instant)
# As sevnet.data.prepare.CODECS / DEFAULT_CODEC (not imported: --help stays instant; a test checks they agree)
CODECS, DEFAULT_CODEC = ("h264", "h264-fastdecode", "h264-intra", "mjpeg"), "mjpeg"
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
    _add_prepare(sub)


_PREPARE = """Mirror the dataset folder SRC into DST, same layout, so that any config works with data.root=DST:
videos re-encoded with short side S (never upscaled; names kept: a .webm holds Matroska/MJPEG), frame
images resized (same names), annotation and label files copied. Resumable (finished files are skipped);
output frame counts are checked; files that cannot be read are copied as they are and reported in
DST.prepare.csv beside DST. Exit status: 0 when every file was read, 1 when some were not, 2 on an error."""


def _add_prepare(sub: Any) -> None:
    p = sub.add_parser("prepare", help="re-encode a dataset for fast decoding (same layout)", description=_PREPARE)
    p.add_argument("src", metavar="SRC", help="the dataset folder, as released (any data.format's layout)")
    p.add_argument("dst", metavar="DST", help="where to write the prepared copy (outside SRC)")
    p.add_argument("--short-side", type=int, required=True, help="short side of the output in pixels, e.g. 256")
    p.add_argument("--codec", choices=sorted(CODECS), default=DEFAULT_CODEC,
                   help=f"video codec (default {DEFAULT_CODEC}: fastest in benchmarks/loader_bench.py)")  # fmt: skip
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of frame images (default 90)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU cores, at most 8)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one file may take before it counts as hung")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    return _prepare(args) if args.data_verb == "prepare" else _check(args)


def _prepare(args: argparse.Namespace) -> int:
    from sevnet.data.prepare import prepare_dataset

    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    report = prepare_dataset(args.src, args.dst, args.short_side, codec=args.codec, workers=workers,
                             quality=args.quality, timeout=args.timeout, progress=not args.no_progress)  # fmt: skip
    counts = report.counts()
    kinds = Counter(r["kind"] for r in report.rows)
    print(f"prepared {kinds['video']} videos and {kinds['frames']} frame folders into {args.dst} "
          f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'no media'}); "
          f"copied {report.copied} other files; left out {report.skipped_hidden} hidden entries")  # fmt: skip
    for row in report.problems[:20]:
        print(f"  {row['status']:<10} {row['path']}: {row['reason']}")
    if len(report.problems) > 20:
        print(f"  ... and {len(report.problems) - 20} more (see the report)")
    print(f"{len(report.problems)} files could not be fully read; report: {report.report_path}")
    return 1 if report.problems else 0


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
        from sevnet.errors import NotFoundError

        raise NotFoundError(f"no such folder, and {err}") from None


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
    """One line per problem; file names escaped (``printable``): a newline or ESC in one cannot forge
    or rewrite a line."""
    from sevnet.display import printable

    splits = {}
    for row in report.rows:
        splits[row["split"]] = splits.get(row["split"], 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items(), key=lambda kv: kv[0] != "ok"))
    per_split = ", ".join(f"{s} {n}" for s, n in splits.items())
    print(f"checked {len(report.rows)} samples ({per_split}): {counts or 'nothing to check'}")
    for note in report.notes:
        print(f"  {printable(note)}")
    for row in report.problems[:limit]:
        print(f"  {row['status']:<10} {row['split']:<5} {printable(row['path'])}: {printable(row['reason'])}")
    if len(report.problems) > limit:
        print(f"  ... and {len(report.problems) - limit} more (see the report)")
    print(f"report: {report.report_path}")
    if report.excluded:
        print(f"exclude list ({len(report.excluded)} files): {report.exclude_path}")
        print(f"  train without them: data.exclude_list={report.exclude_path.resolve()}")

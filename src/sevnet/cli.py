"""The ``sevnet`` command. Each verb lives in ``sevnet/commands/<verb>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports stay inside ``run`` so that
``sevnet --help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

# (verb, one-line help). Add a verb here when its module exists.
VERBS: list[tuple[str, str]] = [
    ("demo", "train SEVNet-XS on the built-in benchmark on this CPU, in minutes, with a report"),
    ("configs", "list the shipped experiment configs, or print one by name (to copy and edit)"),
    ("train", "train a model from a config (one process or torchrun/DDP), resumable"),
    ("eval", "evaluate a checkpoint with the benchmark's metrics, single or multi-view"),
    ("export", "export a checkpoint to ONNX or OpenVINO, checked against PyTorch"),
    ("quantize", "int8 post-training quantization (OpenVINO NNCF) with an accuracy check"),
    ("predict", "top-k classes for video files from a checkpoint or an exported model"),
    ("stream", "classify a live source (file, camera, rtsp/http URL) frame by frame with a causal SEVNet"),
    ("profile", "parameters, GMACs, activation memory and CPU latency, side by side"),
    ("data", "'data check': the bad files (report + exclude list); 'data prepare': a copy re-encoded for speed"),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="sevnet", description="Efficient video action recognition with SEVNets.")
    parser.add_argument("--version", action="version", version=f"sevnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print its traceback too")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help_text in VERBS:
        module = importlib.import_module(f"sevnet.commands.{verb}")
        p = sub.add_parser(verb, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(p)
        _accept_debug(p)
        p.set_defaults(_run=module.run)
    return parser


def _accept_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the verb too (``sevnet train CFG --debug``, ``sevnet data check DIR --debug``), in
    the verb's parser and any of its sub-verbs'; default SUPPRESS: when absent there, the global flag stays."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _accept_debug(sub)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, except that ``key=value`` overrides may also follow the flags (``sevnet train
    CFG --resume k=v``, ``sevnet quantize CKPT --calib CFG data.root=X``): argparse gives a positional
    list one run of arguments, so those after a flag are collected here."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A ``SevnetError`` (bad input, named) prints one line and exits 2 (a training run
    stopped by SIGTERM/SIGINT after saving: 143/130), with its traceback first under ``--debug``;
    Ctrl-C elsewhere exits 130 without a traceback; any other exception (a bug, out of memory) is
    not caught here and keeps its traceback."""
    from .errors import SevnetError

    args = parse_args(build_parser(), argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `sevnet configs | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141  # what a shell reports for SIGPIPE
    except SevnetError as err:  # messages quote files: control chars escaped
        from .display import printable

        if getattr(args, "debug", False):
            traceback.print_exc()
        status = getattr(err, "exit_status", 2)  # a run stopped by a signal: 128 + the signal, after its save
        if not getattr(err, "quiet", False):
            kind = "stopped" if status != 2 else "error"
            print(f"sevnet {args.verb}: {kind}: {printable(err, keep_newlines=True)}", file=sys.stderr)
        return status
    except KeyboardInterrupt:  # a second Ctrl-C (the first stops training cleanly) or one outside training
        print(f"sevnet {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

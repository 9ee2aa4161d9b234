"""Top-k classes for each video file, from a checkpoint (PyTorch) or an exported model (ONNX
Runtime, OpenVINO). A video that cannot be read is reported by name; the others are still
predicted, and the exit code is 1 if any failed."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", help="video files (mp4, webm, avi, ...) or JPEG frame folders")
    p.add_argument("--checkpoint", help="a .safetensors checkpoint (PyTorch backend)")
    p.add_argument("--model", help="an exported .onnx or .xml file (with its .sevnet.json beside it)")
    p.add_argument("--backend", choices=["torch", "onnx", "openvino"], default=None)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, default=1, help="clips per video, scores averaged (long videos)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from sevnet.deploy.predict import predict_videos
    from sevnet.deploy.runtime import ModelFileError, load_runner
    from sevnet.engine import CheckpointError

    if not args.checkpoint and not args.model:
        print("sevnet predict: error: give --checkpoint or --model", file=sys.stderr)
        return 2
    try:
        runner, meta = load_runner(args.checkpoint, args.model, args.backend)
        results = predict_videos(args.videos, runner, meta, topk=args.topk, clips=args.clips)
    except (CheckpointError, ModelFileError, ValueError, RuntimeError) as err:
        print(f"sevnet predict: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['video']}: ERROR {r['error']}")
            else:
                top = ", ".join(f"{name} ({score:.1%})" for name, score in r["top"])
                print(f"{r['video']}: {top}")
    failed = [r["video"] for r in results if "error" in r]
    if failed:
        print(f"{len(failed)} of {len(results)} videos could not be read: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0

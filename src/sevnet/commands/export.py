"""Export a checkpoint to ONNX (dynamic batch and clip length) or OpenVINO IR.

The export checks itself: on fresh random clips the exported model must match PyTorch within the
stated tolerance, else the command fails and says by how much.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by sevnet train")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx",
                   help="onnx (default), or openvino: the ONNX model and its OpenVINO IR beside it")  # fmt: skip
    p.add_argument("--out", default=None, help="output path without suffix (default: beside the checkpoint)")


def run(args: argparse.Namespace) -> int:
    from sevnet.deploy.export import export_checkpoint

    report = export_checkpoint(args.checkpoint, args.format, args.out)
    print(json.dumps(report, indent=2))
    return 0

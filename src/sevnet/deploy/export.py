"""Export to ONNX (dynamic batch and clip length) and OpenVINO IR; every export checks itself
against PyTorch on fresh random clips and fails, saying by how much, if they disagree."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevnet.engine.card import ModelCard
from sevnet.engine.checkpoint import load_model, read_checkpoint, weights_digest
from sevnet.engine.rundir import check_writable
from sevnet.errors import InputError, SevnetError
from sevnet.extras import require

from .runtime import Runner, onnx_runner, openvino_runner, torch_runner, write_sidecar

TOLERANCE = 1e-3  # max |exported - torch| logits, relative to max(1, max |torch logits|)


class ExportMismatchError(SevnetError, RuntimeError):
    """The exported model's outputs differ from PyTorch's beyond the tolerance."""


def export_onnx(model: nn.Module, path: str | Path, clip_shape: tuple[int, int, int]) -> Path:
    """ONNX with dynamic batch (dim 0) and clip length T (dim 2): SEVNet never strides time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    require("onnx", "ONNX export")
    model = model.eval()
    example = torch.randn(2, 3, *clip_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the dynamo exporter, PyTorch's supported path
            batch = torch.export.Dim("batch", min=1, max=4096)
            time = torch.export.Dim("time", min=1, max=4096)
            torch.onnx.export(model, (example,), str(path), input_names=["clip"], output_names=["logits"],
                              dynamic_shapes=({0: batch, 2: time},), dynamo=True, opset_version=18,
                              verbose=False)  # fmt: skip
        except Exception:
            torch.onnx.export(model, (example,), str(path), input_names=["clip"], output_names=["logits"],
                              dynamic_axes={"clip": {0: "batch", 2: "time"}, "logits": {0: "batch"}},
                              dynamo=False, opset_version=17)  # fmt: skip
    return path


def export_openvino(onnx_path: str | Path, xml_path: str | Path) -> Path:
    ov = require("openvino", "OpenVINO export")
    ov_model = ov.convert_model(str(onnx_path))
    ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)


def check_agreement(
    reference: Runner, exported: Runner, clip_shape: tuple[int, int, int], path: Path, tolerance: float = TOLERANCE,
    trials: tuple[tuple[int, int], ...] = ((1, 0), (3, 0), (2, 2)),
) -> float:  # fmt: skip
    """Compare on fresh random clips at several batch sizes and clip lengths (T, T + extra)."""
    t, h, w = clip_shape
    worst = 0.0
    rng = np.random.default_rng()
    for batch, extra_t in trials:
        clips = rng.standard_normal((batch, 3, t + extra_t, h, w)).astype(np.float32)
        ref, out = reference(clips), exported(clips)
        for name, values in (("PyTorch", ref), (str(path), out)):
            if not np.isfinite(values).all():  # NaN - NaN compares as no error: refuse instead
                raise ExportMismatchError(
                    f"{path}: {name} output holds NaN/inf on a {batch}x3x{t + extra_t}x{h}x{w} input; an exported "
                    f"model must give finite scores"
                )
        if ref.shape != out.shape:
            raise ExportMismatchError(f"{path}: output shape {out.shape} != PyTorch {ref.shape}")
        err = float(np.abs(ref - out).max() / max(1.0, float(np.abs(ref).max())))
        worst = max(worst, err)
        if err > tolerance:
            raise ExportMismatchError(
                f"{path}: outputs differ from PyTorch by {err:.2e} (relative max) on a {batch}x3x{t + extra_t}x{h}x{w} "
                f"input; tolerance {tolerance:.0e}"
            )
    return worst


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path | None = None) -> dict[str, Any]:
    """Export a checkpoint to ``fmt`` ('onnx' or 'openvino'), check it, write the sidecar metadata."""
    base = Path(out) if out else Path(checkpoint).with_suffix("")
    check_writable(base.parent, "the --out folder")
    model, meta = load_model(checkpoint)
    base.parent.mkdir(parents=True, exist_ok=True)
    card = ModelCard.from_meta(meta)
    clip_shape = (card.clip.num_frames, card.clip.crop, card.clip.crop)
    onnx_path = base.with_suffix(".onnx")
    export_onnx(model, onnx_path, clip_shape)
    card = card.exported(weights_digest(read_checkpoint(checkpoint)[0]), str(checkpoint))
    report: dict[str, Any] = {"onnx": str(onnx_path), "tolerance": TOLERANCE, "clip_shape": list(clip_shape)}
    reference = torch_runner(model)
    report["onnx_max_rel_error"] = check_agreement(reference, onnx_runner(onnx_path), clip_shape, onnx_path)
    write_sidecar(onnx_path, card)
    if fmt == "openvino":
        xml = export_openvino(onnx_path, base.with_suffix(".xml"))
        report["openvino"] = str(xml)
        report["openvino_max_rel_error"] = check_agreement(reference, openvino_runner(xml), clip_shape, xml)
        write_sidecar(xml, card)
    elif fmt != "onnx":
        raise InputError(f"format must be 'onnx' or 'openvino', got {fmt!r}")
    return report

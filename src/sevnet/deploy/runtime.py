"""Inference backends behind one call: ``runner(clips: float32 (N, 3, T, H, W)) -> logits (N, K)``.

PyTorch eager (from a checkpoint), ONNX Runtime (.onnx) and OpenVINO (.xml, float32 or int8).
An exported model carries its checkpoint's metadata in a sidecar ``<file>.sevnet.json`` (class
names, preprocessing), so it is as self-describing as the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevnet.engine.checkpoint import load_model, read_checkpoint, weights_digest
from sevnet.errors import SevnetError

Runner = Callable[[np.ndarray], np.ndarray]


class ModelFileError(SevnetError, RuntimeError):
    """An exported model that cannot be used (missing, unreadable, or not matching its metadata)."""


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".sevnet.json")


def write_sidecar(model_path: str | Path, meta: dict[str, Any]) -> Path:
    path = sidecar_path(model_path)
    path.write_text(json.dumps({k: v for k, v in meta.items() if k != "config"}, indent=2))
    return path


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{model_path}: no metadata file {path.name} beside it (written by `sevnet export`)")
    return json.loads(path.read_text())


def torch_runner(model: torch.nn.Module) -> Runner:
    model.eval()

    @torch.inference_mode()
    def run(clips: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(clips))).float().numpy()

    return run


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; a file it cannot load is a ModelFileError naming it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelFileError(f"{path}: cannot load as an ONNX model ({err})") from None


def onnx_runner(path: str | Path, threads: int | None = None) -> Runner:
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda clips: session.run(None, {name: np.ascontiguousarray(clips, np.float32)})[0]


def openvino_runner(path: str | Path, threads: int | None = None, hint: str = "LATENCY") -> Runner:
    import openvino as ov

    core = ov.Core()
    # f32: on CPUs with bf16 units OpenVINO would otherwise run float layers in bf16 (~1e-2 error).
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as err:  # openvino raises RuntimeError subclasses with long messages
        raise ModelFileError(f"{path}: cannot load as an OpenVINO model ({str(err)[:300]})") from None
    request = compiled.create_infer_request()

    def run(clips: np.ndarray) -> np.ndarray:
        return request.infer({0: np.ascontiguousarray(clips, np.float32)})[0].copy()

    return run


def load_runner(
    checkpoint: str | Path | None = None, model_file: str | Path | None = None, backend: str | None = None
) -> tuple[Runner, dict[str, Any]]:
    """A runner and the metadata (class names, preprocessing) for a checkpoint or an exported file."""
    if model_file is None:
        if checkpoint is None:
            raise ValueError("give a checkpoint or an exported model file")
        if backend not in (None, "torch"):
            raise ValueError(f"backend {backend!r} needs an exported --model file (see `sevnet export`)")
        model, meta = load_model(checkpoint)
        return torch_runner(model), meta
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ModelFileError(f"{model_file}: no such model file")
    meta = read_sidecar(model_file)
    if checkpoint is not None and meta.get("weights_digest") != weights_digest(read_checkpoint(checkpoint)[0]):
        raise ModelFileError(f"{model_file}: was not exported from {checkpoint} (weights differ)")
    suffix = model_file.suffix.lower()
    backend = backend or {".onnx": "onnx", ".xml": "openvino"}.get(suffix)
    if backend == "onnx":
        runner = onnx_runner(model_file)
    elif backend == "openvino":
        runner = openvino_runner(model_file)
    else:
        raise ModelFileError(f"{model_file}: unknown model format (expected .onnx or .xml)")
    return runner, meta

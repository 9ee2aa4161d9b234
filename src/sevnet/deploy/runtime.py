"""Inference backends behind one call: ``runner(clips: float32 (N, 3, T, H, W)) -> logits (N, K)``.

PyTorch eager (from a checkpoint), ONNX Runtime (.onnx) and OpenVINO (.xml, float32 or int8).
An exported model carries its checkpoint's metadata in a sidecar ``<file>.sevnet.json`` (class
names, preprocessing), so it is as self-describing as the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sevnet.data.transforms import normalize_clips
from sevnet.device import DeviceError, autocast, check_device_spec, inference_dtype, resolve_device
from sevnet.engine.card import ModelCard, as_card
from sevnet.engine.checkpoint import load_model, read_checkpoint, weights_digest
from sevnet.errors import InputError, SevnetError
from sevnet.extras import require

Runner = Callable[[np.ndarray], np.ndarray]


class ModelFileError(SevnetError, RuntimeError):
    """An exported model that cannot be used (missing, unreadable, or not matching its metadata)."""


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".sevnet.json")


# The files of an exported model named by its stem: ONNX (with its external-data file, if any) and
# OpenVINO IR (.xml + .bin). The sidecar records the SHA-256 of each that exists.
MODEL_FILE_SUFFIXES = (".onnx", ".onnx.data", ".xml", ".bin")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def class_names_digest(names: Any) -> str:
    """SHA-256 of the class-name list as JSON (so an edited label is caught)."""
    return hashlib.sha256(json.dumps(names, ensure_ascii=True).encode()).hexdigest()


# What ``write_sidecar`` adds to the metadata (and replaces when given a sidecar's own metadata).
SIDECAR_INTEGRITY_KEYS = ("files", "class_names_sha256")


def _model_files(model_path: Path) -> list[Path]:
    stem = model_path.with_name(model_path.stem)
    return [p for p in (Path(f"{stem}{s}") for s in MODEL_FILE_SUFFIXES) if p.is_file()]


def write_sidecar(model_path: str | Path, meta: ModelCard | dict[str, Any]) -> Path:
    """``<stem>.sevnet.json``: the metadata (a card's, but for the training config), the SHA-256 of every
    model file of that stem (``files``) and of the class-name list (``class_names_sha256``), which
    ``read_sidecar`` verifies."""
    path = sidecar_path(model_path)
    card = as_card(meta)
    kept = {k: v for k, v in card.extra.items() if k not in ("config", *SIDECAR_INTEGRITY_KEYS)}
    card = replace(card, provenance=replace(card.provenance, config=None), extra=kept)
    record = card.to_meta()
    record["files"] = {p.name: sha256_file(p) for p in _model_files(Path(model_path))}
    record["class_names_sha256"] = class_names_digest(record.get("class_names"))
    path.write_text(json.dumps(record, indent=2))
    return path


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The sidecar's metadata, once the model file(s) and class names match the SHA-256 it records;
    a missing, malformed or mismatching sidecar is a ModelFileError naming the file."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{model_path}: no metadata file {path.name} beside it (written by `sevnet export`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: not a valid metadata file ({err}); re-run `sevnet export`") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: not a valid metadata file (a JSON object expected); re-run `sevnet export`")
    verify_sidecar(Path(model_path), path, meta)
    return meta


def verify_sidecar(model_path: Path, path: Path, meta: dict[str, Any]) -> None:
    """Refuse a model file (and its .bin) or class names that differ from what ``path`` recorded at export."""
    files = meta.get("files")
    if not isinstance(files, dict) or "class_names_sha256" not in meta:
        raise ModelFileError(f"{path}: no integrity record (files, class_names_sha256); re-run `sevnet export`")
    needed = [model_path] + ([model_path.with_suffix(".bin")] if model_path.suffix.lower() == ".xml" else [])
    for file in needed:
        if file.name not in files:
            raise ModelFileError(f"{file}: not among the files {path.name} was written for; re-run `sevnet export`")
        if not file.is_file():
            raise ModelFileError(f"{file}: missing (the model {model_path.name} needs it)")
        if sha256_file(file) != files[file.name]:
            raise ModelFileError(
                f"{file}: SHA-256 differs from the one {path.name} recorded at export (replaced or damaged); "
                "re-run `sevnet export`"
            )
    if class_names_digest(meta.get("class_names")) != meta["class_names_sha256"]:
        raise ModelFileError(f"{path}: class_names differ from those recorded at export (SHA-256 mismatch)")


class TorchRunner:
    """PyTorch eager on one device. In: float32 (N, 3, T, H, W) clips (a NumPy array or a tensor), or
    uint8 clips with ``stats=(mean, std)``, normalised where the model is (a quarter of the bytes to
    copy to a GPU). Out: float32 NumPy logits. On a GPU the model runs channels_last_3d (as trained)
    under ``precision`` (auto: bf16 where supported; float32 on a CPU)."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "float32") -> None:
        self.device = resolve_device(device, key="device")
        self.dtype = inference_dtype(precision, self.device)
        self.channels_last = self.device.type == "cuda"
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray | torch.Tensor, stats: tuple[Any, Any] | None = None) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(clips)) if isinstance(clips, np.ndarray) else clips
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        if stats is not None:
            x = normalize_clips(x, *stats)
        with autocast(self.device, self.dtype):
            logits = self.model(x)
        return logits.float().cpu().numpy()


def torch_runner(model: torch.nn.Module, device: str = "cpu", precision: str = "float32") -> TorchRunner:
    """A ``TorchRunner``: float32 on the CPU unless asked (what export and quantize compare against)."""
    return TorchRunner(model, device, precision)


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; a file it cannot load is a ModelFileError naming it."""
    ort = require("onnxruntime", "Running an ONNX model")

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


def compile_openvino(
    path: str | Path, threads: int | None = None, hint: str = "LATENCY", feature: str = "Running an OpenVINO model"
) -> Any:
    """An OpenVINO model compiled for the CPU in float32; a file it cannot load is a ModelFileError."""
    ov = require("openvino", feature)
    core = ov.Core()
    # f32: on CPUs with bf16 units OpenVINO would otherwise run float layers in bf16 (~1e-2 error).
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as err:  # openvino raises RuntimeError subclasses with long messages
        raise ModelFileError(f"{path}: cannot load as an OpenVINO model ({str(err)[:300]})") from None


def openvino_runner(path: str | Path, threads: int | None = None, hint: str = "LATENCY") -> Runner:
    request = compile_openvino(path, threads, hint).create_infer_request()

    def run(clips: np.ndarray) -> np.ndarray:
        return request.infer({0: np.ascontiguousarray(clips, np.float32)})[0].copy()

    return run


def load_runner(
    checkpoint: str | Path | None = None, model_file: str | Path | None = None, backend: str | None = None,
    device: str = "cpu", precision: str = "auto",
) -> tuple[Runner, dict[str, Any]]:  # fmt: skip
    """A runner and the metadata (class names, preprocessing) for a checkpoint or an exported file.
    ``device`` / ``precision``: where and how a checkpoint runs (exported models run on the CPU)."""
    if model_file is None:
        if checkpoint is None:
            raise InputError("give a checkpoint or an exported model file")
        if backend not in (None, "torch"):
            raise InputError(f"backend {backend!r} needs an exported --model file (see `sevnet export`)")
        model, meta = load_model(checkpoint)
        return torch_runner(model, device, precision), meta
    if check_device_spec(device, "device") not in ("cpu", "auto"):
        raise DeviceError(f"device={device}: an exported model ({Path(model_file).name}) runs on the CPU with ONNX "
                          "Runtime or OpenVINO; give the .safetensors checkpoint to run on a GPU")  # fmt: skip
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ModelFileError(f"{model_file}: no such model file")
    meta = read_sidecar(model_file)
    recorded_digest = ModelCard.from_meta(meta).provenance.weights_digest
    if checkpoint is not None and recorded_digest != weights_digest(read_checkpoint(checkpoint)[0]):
        raise ModelFileError(f"{model_file}: was not exported from {checkpoint} (weights differ)")
    suffix = model_file.suffix.lower()
    backend = backend or {".onnx": "onnx", ".xml": "openvino"}.get(suffix)
    if backend == "onnx":
        runner = onnx_runner(model_file)
    elif backend == "openvino":
        runner = openvino_runner(model_file)
    else:
        raise ModelFileError(f"{model_file}: unknown model format (expected .onnx or .xml)")
    _check_input(runner, meta, model_file)
    return runner, meta


def _check_input(runner: Runner, meta: dict[str, Any], model_file: Path) -> None:
    """Run the model once on a blank clip of the shape its sidecar's preprocessing makes: a sidecar
    that does not fit the model (an edited crop or frame count; the digests cover the model files and
    class names, not these) is refused here by name, not met as a runtime's InvalidArgument later."""
    card = ModelCard.from_meta(meta)
    try:
        if card.lacks("data.num_frames", "data.eval_crop"):
            raise KeyError("num_frames")
        shape = (1, 3, int(card.clip.num_frames), int(card.clip.crop), int(card.clip.crop))
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{sidecar_path(model_file)}: 'data' lacks num_frames or eval_crop") from None
    try:
        out = np.asarray(runner(np.zeros(shape, np.float32)))
    except Exception as err:  # each runtime raises its own types
        raise ModelFileError(
            f"{model_file}: does not accept the {'x'.join(map(str, shape))} clip its sidecar "
            f"{sidecar_path(model_file).name} describes (data.num_frames, data.eval_crop): {str(err)[:200]}"
        ) from None
    if out.shape[-1] != len(card.class_names):
        names = len(card.class_names)
        raise ModelFileError(f"{model_file}: outputs {out.shape[-1]} classes, its sidecar names {names}")

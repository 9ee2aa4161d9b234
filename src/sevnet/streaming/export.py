"""Stateful export of the streaming step: ONNX / OpenVINO models whose state is explicit inputs and outputs.

Why explicit: a runtime then needs no custom op and no hidden variables; the caller owns the state
(one tuple per stream, so one model serves many cameras), and the sidecar says what each tensor is.
``flat4d=True`` makes every tensor at the boundary at most 4-D (one frame in as (N, 3, H, W);
each (N, C, k-1, H, W) buffer flattened to (N, C*(k-1), H, W)) for runtimes that reject 5-D
inputs. Every export runs the exported step and PyTorch's side by side over a sequence of frames,
each feeding its own state back, and fails past the tolerance, as ``sevnet export`` does for clips.
The state tensors, their names and order are the state plan's (``sevnet.streaming.plan``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sevnet.deploy.export import TOLERANCE, ExportMismatchError, export_openvino
from sevnet.deploy.runtime import write_sidecar
from sevnet.engine.card import ModelCard, StreamingLayout, as_card
from sevnet.engine.checkpoint import load_model, read_checkpoint, weights_digest
from sevnet.errors import InputError

from .eager import init_state, run_step
from .plan import state_plan
from .runners import StepFn, StepRunner, onnx_step_fn, openvino_step_fn
from .state import StateEntry, boundary_shape, io_names

CHECK_STEPS = 16  # frames fed one at a time (then one chunk, in 5-D mode) by the export self-check


class StepModule(nn.Module):
    """``forward(frames, *state) -> (logits, *new_state)``: the step function as a module to export.

    Holds the model itself (its weights are not copied). Logits are those after the last frame.
    """

    def __init__(self, model: nn.Module, layout: list[StateEntry], window: int = 0, flat4d: bool = False) -> None:
        super().__init__()
        self.model, self.layout, self.window, self.flat4d = model.eval(), layout, window, flat4d
        self.plan = state_plan(model, window)
        if [s.name for s in self.plan.slots] != [e.name for e in layout]:
            raise ValueError("the layout is not this model's state plan (another model, or another window)")

    def forward(self, frames: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        if self.flat4d:
            frames = frames.unsqueeze(2)
            state = tuple(s.reshape(-1, *e.shape) for s, e in zip(state, self.layout))
        logits, new = run_step(self.plan, state, frames, every_frame=False)
        if self.flat4d:
            new = tuple(s.reshape(-1, *boundary_shape(e, True)) for s, e in zip(new, self.layout))
        return (logits, *new)


def _example(module: StepModule, frame_size: tuple[int, int], batch: int, chunk: int) -> tuple[Tensor, ...]:
    state = tuple(torch.zeros(batch, *boundary_shape(e, module.flat4d)) for e in module.layout)
    shape = (batch, 3, *frame_size) if module.flat4d else (batch, 3, chunk, *frame_size)
    return (torch.randn(shape), *state)


def export_step_onnx(module: StepModule, path: str | Path, frame_size: tuple[int, int]) -> Path:
    """ONNX with dynamic batch (every input's dim 0) and, in 5-D mode, dynamic chunk length."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs, outputs = io_names(module.layout)
    args = _example(module, frame_size, 2, 2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:  # the dynamo exporter, PyTorch's supported path
            batch, time = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("time", min=1, max=4096)
            frames_dims = {0: batch} if module.flat4d else {0: batch, 2: time}
            dynamic = (frames_dims, *({0: batch} for _ in module.layout))
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_shapes=dynamic, dynamo=True, opset_version=18, verbose=False)  # fmt: skip
        except Exception:
            axes = {name: {0: "batch"} for name in inputs + outputs}
            if not module.flat4d:
                axes["frames"] = {0: "batch", 2: "time"}
            torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, dynamo=False, opset_version=17)  # fmt: skip
    return path


def torch_step_fn(module: StepModule) -> StepFn:
    module.eval()

    @torch.inference_mode()
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [t.numpy() for t in module(*(torch.from_numpy(a) for a in arrays))]

    return run


def check_step_agreement(
    reference: StepRunner, exported: StepRunner, frame_size: tuple[int, int], path: Path,
    steps: int = CHECK_STEPS, batch: int = 2, tolerance: float = TOLERANCE,
) -> float:  # fmt: skip
    """Feed both the same random frames one at a time (then a chunk of 3, in 5-D mode), each
    carrying its own state; compare the logits at every step and the state at the end."""
    rng = np.random.default_rng()
    reference.reset(), exported.reset()
    worst = 0.0
    feeds = [rng.standard_normal((batch, 3, *frame_size)).astype(np.float32) for _ in range(steps)]
    if not exported.flat4d:
        feeds = [f[:, :, None] for f in feeds] + [rng.standard_normal((batch, 3, 3, *frame_size)).astype(np.float32)]
    for i, frames in enumerate(feeds):
        pairs = [(reference.step(frames), exported.step(frames), "logits")]
        if i == len(feeds) - 1:
            pairs += [(a, b, e.name) for a, b, e in zip(reference.state, exported.state, reference.layout)]
        for ref, out, what in pairs:
            if ref.shape != out.shape:
                raise ExportMismatchError(f"{path}: {what} shape {out.shape} != PyTorch {ref.shape}")
            err = float(np.abs(ref - out).max() / max(1.0, float(np.abs(ref).max())))
            worst = max(worst, err)
            if err > tolerance:
                raise ExportMismatchError(f"{path}: {what} differ from PyTorch by {err:.2e} (relative max) at step "
                                          f"{i + 1} of {len(feeds)}; tolerance {tolerance:.0e}")  # fmt: skip
    return worst


def streaming_sidecar(module: StepModule, frame_size: tuple[int, int]) -> dict[str, Any]:
    """What the sidecar records: the boundary layout, enough to drive the model with no PyTorch."""
    h, w = frame_size
    inputs, outputs = io_names(module.layout)
    state = [
        {**asdict(e), "boundary_shape": list(boundary_shape(e, module.flat4d)), "input": i, "output": o,
         "init": "zeros"}
        for e, i, o in zip(module.layout, inputs[1:], outputs[1:])
    ]  # fmt: skip
    return {
        "window": module.window,
        "flat4d": module.flat4d,
        "frame_size": [h, w],
        "frames_input": {"name": "frames", "shape": ["batch", 3, h, w] if module.flat4d else ["batch", 3, "t", h, w]},
        "logits_output": {"name": "logits", "shape": ["batch", "num_classes"], "after": "the last frame fed"},
        "state": state,
    }


def export_stream_model(
    model: nn.Module, base: str | Path, frame_size: tuple[int, int], fmt: str = "onnx", window: int = 0,
    flat4d: bool = False, meta: ModelCard | dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Export the step of ``model`` to ``<base>.onnx`` (and ``.xml``), check each, write the sidecars."""
    if fmt not in ("onnx", "openvino"):
        raise InputError(f"format must be 'onnx' or 'openvino', got {fmt!r}")
    base = Path(base)
    _, layout = init_state(model, frame_size, 1, window)
    module = StepModule(model, layout, window, flat4d)
    onnx_path = export_step_onnx(module, base.with_suffix(".onnx"), frame_size)
    reference = StepRunner(torch_step_fn(module), layout, flat4d)
    streaming = streaming_sidecar(module, frame_size)
    report: dict[str, Any] = {"onnx": str(onnx_path), "tolerance": TOLERANCE, "check_steps": CHECK_STEPS,
                              "state_tensors": len(layout), "flat4d": flat4d, "window": window}  # fmt: skip
    exported = StepRunner(onnx_step_fn(onnx_path), layout, flat4d)
    report["onnx_max_rel_error"] = check_step_agreement(reference, exported, frame_size, onnx_path)
    card = replace(as_card(meta or {}), streaming=StreamingLayout.from_dict(streaming))
    write_sidecar(onnx_path, card)
    if fmt == "openvino":
        xml = export_openvino(onnx_path, base.with_suffix(".xml"))
        exported = StepRunner(openvino_step_fn(xml), layout, flat4d)
        report["openvino"] = str(xml)
        report["openvino_max_rel_error"] = check_step_agreement(reference, exported, frame_size, xml)
        write_sidecar(xml, card)
    return report


def export_stream_checkpoint(
    checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None, window: int = 0, flat4d: bool = False
) -> dict[str, Any]:
    """Export a causal checkpoint's step (frames at its evaluation crop) beside it as ``<stem>-stream``."""
    model, meta = load_model(checkpoint)
    card = as_card(meta).exported(weights_digest(read_checkpoint(checkpoint)[0]), str(checkpoint))
    crop = card.clip.crop
    base = Path(out) if out else Path(checkpoint).with_name(Path(checkpoint).stem + "-stream")
    return export_stream_model(model, base, (crop, crop), fmt, window, flat4d, card)

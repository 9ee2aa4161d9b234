"""Step runners: an exported (or PyTorch) streaming step driven with its state held for the caller.

``StepRunner`` drives any step function ``[frames, *state] -> [logits, *new state]`` over NumPy
arrays (PyTorch's eager step, ONNX Runtime, OpenVINO); ``OpenVINOStateRunner`` keeps the state
inside OpenVINO's infer request instead. ``load_step_runner`` makes one from a checkpoint or from
an exported step model file and its sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevnet.deploy.runtime import ModelFileError, compile_openvino, onnx_session, read_sidecar
from sevnet.device import resolve_device
from sevnet.engine.card import StreamingLayout, as_card
from sevnet.errors import InputError
from sevnet.extras import require

from .eager import init_state
from .state import StateEntry, boundary_shape
from .stream import Stream

StepFn = Callable[[list[np.ndarray]], list[np.ndarray]]  # [frames, *state] -> [logits, *new state]


class StepRunner:
    """A step model with its state held here: ``reset()``, then ``step(frames) -> logits (N, K)``.

    The same object drives PyTorch, ONNX Runtime and OpenVINO step functions. The state is built
    (zeros) on the first step after a reset, for that step's batch size.
    """

    def __init__(self, fn: StepFn, layout: list[StateEntry], flat4d: bool) -> None:
        self.fn, self.layout, self.flat4d = fn, layout, flat4d
        self.state: list[np.ndarray] | None = None

    def reset(self) -> None:
        self.state = None

    def zero_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, *boundary_shape(e, self.flat4d)), np.float32) for e in self.layout]

    def step(self, frames: np.ndarray) -> np.ndarray:
        """``frames``: (N, 3, H, W) one frame (4-D models), or (N, 3, t, H, W) (5-D models)."""
        frames = np.ascontiguousarray(frames, np.float32)
        if self.state is None:
            self.state = self.zero_state(frames.shape[0])
        out = self.fn([frames, *self.state])
        self.state = list(out[1:])
        return out[0]

    def frame(self, frame: np.ndarray) -> np.ndarray:
        """Feed one frame (N, 3, H, W) whatever the model's boundary layout."""
        return self.step(frame if self.flat4d else frame[:, :, None])


def eager_step_fn(model: nn.Module, window: int = 0, device: str = "cpu") -> StepFn:
    """The PyTorch step to run: ``Stream``'s (BN folded, one frame on 4-D ops), same state tuple,
    computed on ``device`` (the state travels as NumPy arrays, as for every runtime).

    ``torch_step_fn`` stays the reference that exports are checked against: the plain ``step``.
    """
    where = resolve_device(device, key="--device")
    stream = Stream(model.to(where), window)

    @torch.inference_mode()
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        frames, *state = (torch.from_numpy(a).to(where) for a in arrays)
        logits, new = stream.run(state, frames)
        return [logits.float().cpu().numpy(), *(t.cpu().numpy() for t in new)]

    return run


def onnx_step_fn(path: str | Path, threads: int | None = None) -> StepFn:
    session = onnx_session(path, threads)
    names = [i.name for i in session.get_inputs()]
    return lambda arrays: session.run(None, dict(zip(names, arrays)))


def openvino_step_fn(path: str | Path, threads: int | None = None) -> StepFn:
    compiled = compile_openvino(path, threads, feature="An OpenVINO stream step")
    request = compiled.create_infer_request()
    names = [i.any_name for i in compiled.inputs]
    outputs = compiled.outputs

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = request.infer(dict(zip(names, arrays)))  # outputs are copies (share_outputs=False)
        return [result[o] for o in outputs]

    return run


def compile_stateful(
    path: str | Path, layout: list[StateEntry], flat4d: bool, frames_shape: tuple[int, ...], config: dict[str, Any]
) -> Any:
    """An OpenVINO step model compiled for static ``frames_shape`` with its state inside the infer
    requests (OpenVINO's ``MakeStateful``): every request made from it carries its own stream's state."""
    ov = require("openvino", "An OpenVINO stream step")
    passes = require("openvino.passes", "An OpenVINO stream step")

    core = ov.Core()
    model = core.read_model(str(path))
    batch = frames_shape[0]
    shapes = {"frames": list(frames_shape)}
    shapes |= {f"state.{e.name}": [batch, *boundary_shape(e, flat4d)] for e in layout}
    model.reshape(shapes)
    params = {p.output(0).get_any_name(): p for p in model.get_parameters()}
    results = {name: r for r in model.get_results() for name in r.input_value(0).get_names()}
    manager = passes.Manager()
    manager.register_pass(passes.MakeStateful([(params[f"state.{e.name}"], results[f"next.{e.name}"])
                                               for e in layout]))  # fmt: skip
    manager.run_passes(model)
    try:
        return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **config})
    except Exception as err:  # openvino raises RuntimeError subclasses with long messages
        raise ModelFileError(f"{path}: cannot compile as a stateful model ({str(err)[:300]})") from None


class OpenVINOStateRunner(StepRunner):
    """An OpenVINO step model run with its state kept inside the infer request (OpenVINO's
    ``MakeStateful``: each state input/output pair becomes a variable), compiled for static shapes.

    Same interface as StepRunner; the file keeps its explicit state. Why: no copy of every state
    tensor in and out per frame, and the plugin keeps its own blocked layouts (measured: about half
    the per-frame time of explicit state on SEVNet-XS, docs/streaming.md).
    """

    def __init__(
        self, path: str | Path, layout: list[StateEntry], flat4d: bool, threads: int | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(lambda arrays: arrays, layout, flat4d)
        self.path, self.threads = Path(path), threads
        self.request: Any = None
        self.shape: tuple[int, ...] | None = None
        if frame_size:  # compile now for one stream, one frame at a time, so the first frame is not slow
            self._compile((1, 3, *frame_size) if flat4d else (1, 3, 1, *frame_size))

    def _compile(self, frames_shape: tuple[int, ...]) -> None:
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        compiled = compile_stateful(self.path, self.layout, self.flat4d, frames_shape, config)
        self.request = compiled.create_infer_request()
        self.shape = frames_shape

    def reset(self) -> None:
        self.state = None  # the variables are zeroed on the next step (a new shape recompiles)

    def step(self, frames: np.ndarray) -> np.ndarray:
        frames = np.ascontiguousarray(frames, np.float32)
        if self.request is None or frames.shape != self.shape:
            self._compile(frames.shape)
            self.state = None
        if self.state is None:
            self.request.reset_state()
            self.state = []  # marks "running"; read the values with current_state()
        return self.request.infer({"frames": frames})[0]

    def current_state(self) -> list[np.ndarray]:
        """The state tensors, in layout order (copied out of the request)."""
        values = {v.name: v.state.data.copy() for v in self.request.query_state()}  # ids: "<param><result>..."
        return [next(v for k, v in values.items() if k.startswith(f"state.{e.name}next.{e.name}")) for e in self.layout]


def layout_from_sidecar(streaming: StreamingLayout | dict[str, Any]) -> list[StateEntry]:
    """The state layout a step model's sidecar records (its ``streaming`` entry)."""
    state = streaming.state if isinstance(streaming, StreamingLayout) else streaming["state"]
    return [StateEntry(s["name"], s["kind"], tuple(s["shape"])) for s in state]


def load_step_runner(
    checkpoint: str | Path | None = None, model_file: str | Path | None = None, window: int = 0,
    threads: int | None = None, internal_state: bool = True, device: str = "cpu",
) -> tuple[StepRunner, dict[str, Any]]:  # fmt: skip
    """A step runner and its metadata: PyTorch from a checkpoint, or an exported step model file.

    ``internal_state``: run an OpenVINO file with its state inside the request (faster, same
    results); False drives its explicit state inputs and outputs, as any runtime would."""
    if model_file is None:
        if checkpoint is None:
            raise InputError("give a checkpoint or an exported step model file")
        from sevnet.engine.checkpoint import load_model

        model, meta = load_model(checkpoint)
        crop = as_card(meta).clip.crop
        _, layout = init_state(model, (crop, crop), 1, window)
        return StepRunner(eager_step_fn(model, window, device), layout, False), meta
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ModelFileError(f"{model_file}: no such model file")
    meta = read_sidecar(model_file)
    streaming = as_card(meta).streaming
    if streaming is None:
        raise ModelFileError(f"{model_file}: a clip model, not a streaming step model (export one with "
                             "`sevnet stream --export onnx|openvino --checkpoint CKPT`)")  # fmt: skip
    layout, flat4d = layout_from_sidecar(streaming), streaming.flat4d
    suffix = model_file.suffix.lower()
    if suffix == ".xml" and internal_state:
        return OpenVINOStateRunner(model_file, layout, flat4d, threads, tuple(streaming.frame_size)), meta
    make = {".onnx": onnx_step_fn, ".xml": openvino_step_fn}.get(suffix)
    if make is None:
        raise ModelFileError(f"{model_file}: unknown model format (expected .onnx or .xml)")
    return StepRunner(make(model_file, threads), layout, flat4d), meta

"""Stateful export of the streaming step: ONNX / OpenVINO models whose state is explicit inputs and outputs.

Why explicit: a runtime then needs no custom op and no hidden variables; the caller owns the state
(one tuple per stream, so one model serves many cameras), and the sidecar says what each tensor is.
``flat4d=True`` makes every tensor at the boundary at most 4-D (one frame in as (N, 3, H, W);
each (N, C, k-1, H, W) buffer flattened to (N, C*(k-1), H, W)) for runtimes that reject 5-D
inputs. Every export runs the exported step and PyTorch's side by side over a sequence of frames,
each feeding its own state back, and fails past the tolerance, as ``sevnet export`` does for clips.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sevnet.device import resolve_device
from sevnet.engine.checkpoint import load_model, read_checkpoint, weights_digest
from sevnet.engine.config import ExperimentConfig
from sevnet.streaming import StateEntry, Stream, init_state, step
from sevnet.timing import median_seconds

from .export import TOLERANCE, ExportMismatchError, export_openvino
from .quantize import accuracy_pair, calibration_clips, check_drop, quantize_openvino
from .runtime import ModelFileError, onnx_session, read_sidecar, write_sidecar

CHECK_STEPS = 16  # frames fed one at a time (then one chunk, in 5-D mode) by the export self-check


def boundary_shape(entry: StateEntry, flat4d: bool) -> tuple[int, ...]:
    """The shape (without batch) a state tensor has at the exported model's boundary."""
    if flat4d and entry.kind == "conv_buffer":
        c, p, h, w = entry.shape
        return (c * p, h, w)
    return entry.shape


class StepModule(nn.Module):
    """``forward(frames, *state) -> (logits, *new_state)``: the step function as a module to export.

    Holds the model itself (its weights are not copied). Logits are those after the last frame.
    """

    def __init__(self, model: nn.Module, layout: list[StateEntry], window: int = 0, flat4d: bool = False) -> None:
        super().__init__()
        self.model, self.layout, self.window, self.flat4d = model.eval(), layout, window, flat4d

    def forward(self, frames: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        if self.flat4d:
            frames = frames.unsqueeze(2)
            state = tuple(s.reshape(-1, *e.shape) for s, e in zip(state, self.layout))
        logits, new = step(self.model, state, frames, self.window, every_frame=False)
        if self.flat4d:
            new = tuple(s.reshape(-1, *boundary_shape(e, True)) for s, e in zip(new, self.layout))
        return (logits, *new)


def io_names(layout: list[StateEntry]) -> tuple[list[str], list[str]]:
    """Input and output names: ``frames`` + ``state.<name>``; ``logits`` + ``next.<name>``."""
    return ["frames"] + [f"state.{e.name}" for e in layout], ["logits"] + [f"next.{e.name}" for e in layout]


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


def torch_step_fn(module: StepModule) -> StepFn:
    module.eval()

    @torch.inference_mode()
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [t.numpy() for t in module(*(torch.from_numpy(a) for a in arrays))]

    return run


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
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}  # see runtime.py
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as err:  # openvino raises RuntimeError subclasses with long messages
        raise ModelFileError(f"{path}: cannot load as an OpenVINO model ({str(err)[:300]})") from None
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
    import openvino as ov
    from openvino import passes

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
    flat4d: bool = False, meta: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Export the step of ``model`` to ``<base>.onnx`` (and ``.xml``), check each, write the sidecars."""
    if fmt not in ("onnx", "openvino"):
        raise ValueError(f"format must be 'onnx' or 'openvino', got {fmt!r}")
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
    write_sidecar(onnx_path, {**(meta or {}), "streaming": streaming})
    if fmt == "openvino":
        xml = export_openvino(onnx_path, base.with_suffix(".xml"))
        exported = StepRunner(openvino_step_fn(xml), layout, flat4d)
        report["openvino"] = str(xml)
        report["openvino_max_rel_error"] = check_step_agreement(reference, exported, frame_size, xml)
        write_sidecar(xml, {**(meta or {}), "streaming": streaming})
    return report


def export_stream_checkpoint(
    checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None, window: int = 0, flat4d: bool = False
) -> dict[str, Any]:
    """Export a causal checkpoint's step (frames at its evaluation crop) beside it as ``<stem>-stream``."""
    model, meta = load_model(checkpoint)
    crop = meta["data"]["eval_crop"]
    base = Path(out) if out else Path(checkpoint).with_name(Path(checkpoint).stem + "-stream")
    meta = {**meta, "weights_digest": weights_digest(read_checkpoint(checkpoint)[0]), "source": str(checkpoint)}
    return export_stream_model(model, base, (crop, crop), fmt, window, flat4d, meta)


def layout_from_sidecar(streaming: dict[str, Any]) -> list[StateEntry]:
    return [StateEntry(s["name"], s["kind"], tuple(s["shape"])) for s in streaming["state"]]


def load_step_runner(
    checkpoint: str | Path | None = None, model_file: str | Path | None = None, window: int = 0,
    threads: int | None = None, internal_state: bool = True, device: str = "cpu",
) -> tuple[StepRunner, dict[str, Any]]:  # fmt: skip
    """A step runner and its metadata: PyTorch from a checkpoint, or an exported step model file.

    ``internal_state``: run an OpenVINO file with its state inside the request (faster, same
    results); False drives its explicit state inputs and outputs, as any runtime would."""
    if model_file is None:
        if checkpoint is None:
            raise ValueError("give a checkpoint or an exported step model file")
        from sevnet.engine.checkpoint import load_model

        model, meta = load_model(checkpoint)
        crop = meta["data"]["eval_crop"]
        _, layout = init_state(model, (crop, crop), 1, window)
        return StepRunner(eager_step_fn(model, window, device), layout, False), meta
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ModelFileError(f"{model_file}: no such model file")
    meta = read_sidecar(model_file)
    if "streaming" not in meta:
        raise ModelFileError(f"{model_file}: a clip model, not a streaming step model (export one with "
                             "`sevnet stream --export onnx|openvino --checkpoint CKPT`)")  # fmt: skip
    streaming = meta["streaming"]
    layout, flat4d = layout_from_sidecar(streaming), streaming["flat4d"]
    suffix = model_file.suffix.lower()
    if suffix == ".xml" and internal_state:
        return OpenVINOStateRunner(model_file, layout, flat4d, threads, tuple(streaming["frame_size"])), meta
    make = {".onnx": onnx_step_fn, ".xml": openvino_step_fn}.get(suffix)
    if make is None:
        raise ModelFileError(f"{model_file}: unknown model format (expected .onnx or .xml)")
    return StepRunner(make(model_file, threads), layout, flat4d), meta


def clip_runner(runner: StepRunner) -> Callable[[np.ndarray], np.ndarray]:
    """A clip runner ((V, 3, T, H, W) -> logits (V, K) after the last frame) over a step runner,
    so the clip-level accuracy check of ``sevnet quantize`` applies to step models unchanged."""

    def run(clips: np.ndarray) -> np.ndarray:
        runner.reset()
        for t in range(clips.shape[2]):
            logits = runner.frame(clips[:, :, t])
        return logits

    return run


def calibration_feeds(runner: StepRunner, clips: list[np.ndarray], names: list[str]) -> list[dict[str, np.ndarray]]:
    """The step model's real inputs (frame + the state it meets) at every frame of ``clips``."""
    feeds = []
    for clip in clips:
        runner.reset()
        for t in range(clip.shape[2]):
            frame = clip[:, :, t] if runner.flat4d else clip[:, :, t : t + 1]
            if runner.state is None:
                runner.state = runner.zero_state(frame.shape[0])
            feeds.append(dict(zip(names, [np.ascontiguousarray(frame, np.float32), *runner.state])))
            runner.step(frame)
    return feeds


def running_sum_nodes(model: Any) -> list[str]:
    """OpenVINO nodes that carry frame counts and running sums, from their state inputs up to the
    division that makes them means. These must stay float: their range grows with the stream's
    length, so calibrated int8 ranges would clamp them once a stream outlives the calibration clips."""
    todo = [p for p in model.get_parameters() if p.get_friendly_name().startswith("state.")
            and not p.get_friendly_name().endswith(".buffer")]  # fmt: skip
    seen: dict[str, Any] = {}
    while todo:
        node = todo.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() == "Result":
            continue
        seen[name] = node
        if node.get_type_name() != "Divide":
            todo += [t.get_node() for out in node.outputs() for t in out.get_target_inputs()]
    return sorted(seen)


def quantize_stream_checkpoint(
    checkpoint: str | Path, cfg: ExperimentConfig, out: str | Path | None = None, calib_clips: int = 32,
    max_drop: float = 1.0, eval_limit: int | None = None, window: int = 0, flat4d: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Export the float32 OpenVINO step, quantize it with NNCF (``sevnet quantize``'s flow, fed the
    step's real inputs), then compare float32 and int8 streamed over whole evaluation clips."""
    base = Path(out) if out else Path(checkpoint).with_name(Path(checkpoint).stem + "-stream")
    exported = export_stream_checkpoint(checkpoint, "openvino", base, window, flat4d)
    fp32_xml = Path(exported["openvino"])
    int8_xml = base.with_name(base.name + "-int8.xml")
    explicit, meta = load_step_runner(model_file=fp32_xml, internal_state=False)
    feeds = calibration_feeds(explicit, calibration_clips(cfg.data, calib_clips), io_names(explicit.layout)[0])
    quantize_openvino(fp32_xml, feeds, int8_xml, ignored_scope=running_sum_nodes)  # running sums kept float
    write_sidecar(int8_xml, {**meta, "quantized": "int8 (NNCF post-training, static)"})
    fp32, int8 = load_step_runner(model_file=fp32_xml)[0], load_step_runner(model_file=int8_xml)[0]
    crop = meta["data"]["eval_crop"]
    frame = np.random.default_rng(0).standard_normal((1, 3, crop, crop)).astype(np.float32)
    report: dict[str, Any] = {"fp32_model": str(fp32_xml), "int8_model": str(int8_xml), "calibration_steps": len(feeds)}
    for key, runner in (("fp32", fp32), ("int8", int8)):
        runner.reset()
        report[f"{key}_step_latency_s"] = median_seconds(lambda r=runner: r.frame(frame), 20, warmup=3)
    report |= accuracy_pair(cfg, clip_runner(fp32), clip_runner(int8), eval_limit)
    return check_drop(report, max_drop, "streamed int8", int8_xml)

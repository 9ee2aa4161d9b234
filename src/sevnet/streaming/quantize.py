"""int8 step models: the float32 OpenVINO step quantized with NNCF on its real inputs, accuracy-gated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sevnet.deploy.quantize import accuracy_pair, calibration_clips, check_drop, quantize_openvino
from sevnet.deploy.runtime import write_sidecar
from sevnet.engine.card import as_card
from sevnet.engine.config import ExperimentConfig
from sevnet.timing import median_seconds

from .export import export_stream_checkpoint
from .runners import StepRunner, load_step_runner
from .state import io_names


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
    write_sidecar(int8_xml, as_card(meta).quantized_as("int8 (NNCF post-training, static)"))
    fp32, int8 = load_step_runner(model_file=fp32_xml)[0], load_step_runner(model_file=int8_xml)[0]
    crop = as_card(meta).clip.crop
    frame = np.random.default_rng(0).standard_normal((1, 3, crop, crop)).astype(np.float32)
    report: dict[str, Any] = {"fp32_model": str(fp32_xml), "int8_model": str(int8_xml), "calibration_steps": len(feeds)}
    for key, runner in (("fp32", fp32), ("int8", int8)):
        runner.reset()
        report[f"{key}_step_latency_s"] = median_seconds(lambda r=runner: r.frame(frame), 20, warmup=3)
    report |= accuracy_pair(cfg, clip_runner(fp32), clip_runner(int8), eval_limit)
    return check_drop(report, max_drop, "streamed int8", int8_xml)

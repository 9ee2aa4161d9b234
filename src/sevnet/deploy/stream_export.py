"""Moved to ``sevnet.streaming.export``, ``.runners`` and ``.quantize``: re-exported here (named by earlier docs)."""

from sevnet.streaming.export import (
    CHECK_STEPS,
    StepModule,
    check_step_agreement,
    export_step_onnx,
    export_stream_checkpoint,
    export_stream_model,
    streaming_sidecar,
    torch_step_fn,
)
from sevnet.streaming.quantize import calibration_feeds, clip_runner, quantize_stream_checkpoint, running_sum_nodes
from sevnet.streaming.runners import (
    OpenVINOStateRunner,
    StepFn,
    StepRunner,
    compile_stateful,
    eager_step_fn,
    layout_from_sidecar,
    load_step_runner,
    onnx_step_fn,
    openvino_step_fn,
)
from sevnet.streaming.state import StateEntry, boundary_shape, io_names

__all__ = [
    "CHECK_STEPS",
    "OpenVINOStateRunner",
    "StateEntry",
    "StepFn",
    "StepModule",
    "StepRunner",
    "boundary_shape",
    "calibration_feeds",
    "check_step_agreement",
    "clip_runner",
    "compile_stateful",
    "eager_step_fn",
    "export_step_onnx",
    "export_stream_checkpoint",
    "export_stream_model",
    "io_names",
    "layout_from_sidecar",
    "load_step_runner",
    "onnx_step_fn",
    "openvino_step_fn",
    "quantize_stream_checkpoint",
    "running_sum_nodes",
    "streaming_sidecar",
    "torch_step_fn",
]

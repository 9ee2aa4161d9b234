"""Streaming inference over a causal SEVNet: one frame in, one prediction out, all state explicit.

- ``plan``: the state plan, one walk of the model, and the registry of module types it knows
  (``handlers``: the built-in ones);
- ``state``: the state tuple and its entries;
- ``eager``: ``step``, the specification (the model's own modules on 5-D frames);
- ``lowered``: ``FrameStep``, the same step on one frame with BN folded and 4-D ops;
- ``stream``: ``Stream``, the stateful wrapper;
- ``export``, ``runners``, ``quantize``: the step as ONNX / OpenVINO models with explicit state,
  runners over them, int8 (imported on use: they need the deploy stack).

See docs/streaming.md.
"""

from . import handlers  # noqa: F401  (registers the built-in module types)
from .eager import as_frames, init_state, run_step, state_layout, step
from .lowered import FrameStep, fold_batchnorm
from .plan import Child, Handler, NotStreamableError, Slot, StatePlan, check_streamable, register, state_plan
from .state import State, StateEntry
from .stream import Stream

__all__ = [
    "Child",
    "FrameStep",
    "Handler",
    "NotStreamableError",
    "Slot",
    "State",
    "StateEntry",
    "StatePlan",
    "Stream",
    "as_frames",
    "check_streamable",
    "fold_batchnorm",
    "init_state",
    "register",
    "run_step",
    "state_layout",
    "state_plan",
    "step",
]

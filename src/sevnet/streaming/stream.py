"""``Stream``: a live classifier over a causal SEVNet, the state held for the caller."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sevnet.errors import InputError

from .eager import as_frames, plan_layout, run_step, zero_state
from .lowered import FrameStep, fold_batchnorm
from .plan import check_streamable, state_plan
from .state import State, StateEntry


class Stream:
    """A live classifier over a causal SEVNet: ``reset()``, then ``step(frames)`` -> logits.

    Holds the state tuple (``.state``, layout in ``.layout``) and nothing else; the model is put
    in eval mode (streaming is inference: BN must use its running statistics). It runs a copy of
    the model with BN folded into the convs, one frame at a time through ``FrameStep`` (4-D ops,
    the cheap path) and chunks through the eager step, both from one state plan; the weights are
    read once, here.
    """

    def __init__(self, model: nn.Module, window: int = 0) -> None:
        check_streamable(model)
        if window < 0:
            raise InputError(f"window must be >= 0 (0 = since reset), got {window}")
        self.model, self.window = model.eval(), window
        self.folded = fold_batchnorm(model)
        self.plan = state_plan(self.folded, window)
        self.frame_step = FrameStep(self.folded, window, self.plan)
        self.state: State | None = None
        self.layout: list[StateEntry] = []

    def reset(self) -> None:
        """Forget every frame: the next step starts a new stream (state built from its frame size)."""
        self.state = None

    @property
    def frames_seen(self) -> int:
        return 0 if self.state is None else int(self.state[0][0, 0])

    def run(self, state: Sequence[Tensor], frames: Tensor, every_frame: bool = False) -> tuple[Tensor, State]:
        """The step on this stream's folded model (pure): ``frames`` (N, 3, t, H, W) -> (logits, new state)."""
        if frames.shape[2] == 1:
            logits, new = self.frame_step(state, frames[:, :, 0])
            return (logits.unsqueeze(1) if every_frame else logits), new
        return run_step(self.plan, state, frames, every_frame)

    @torch.inference_mode()
    def step(self, frames: Tensor, every_frame: bool = False) -> Tensor:
        """Feed one frame or a chunk; logits after its last frame (N, K), or after each (N, t, K)."""
        x = as_frames(frames)
        if self.state is None:
            self.layout = plan_layout(self.plan, tuple(x.shape[-2:]))
            self.state = zero_state(self.layout, x.shape[0], next(self.folded.parameters()))
        logits, self.state = self.run(self.state, x, every_frame)
        return logits

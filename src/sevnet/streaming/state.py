"""The streaming state: a flat tuple of tensors, each described by a ``StateEntry``.

Shared by the eager step, the lowered 4-D step and the exported step models (whose inputs and
outputs are these tensors, named from the entries).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

State = tuple[Tensor, ...]


@dataclass(frozen=True)
class StateEntry:
    """One state tensor: its name (module path + role), kind and shape without the batch dim."""

    name: str
    kind: str  # "count" | "conv_buffer" | "se_sum" | "pool_sum" | "pool_window"
    shape: tuple[int, ...]


def boundary_shape(entry: StateEntry, flat4d: bool) -> tuple[int, ...]:
    """The shape (without batch) a state tensor has at an exported model's boundary."""
    if flat4d and entry.kind == "conv_buffer":
        c, p, h, w = entry.shape
        return (c * p, h, w)
    return entry.shape


def io_names(layout: list[StateEntry]) -> tuple[list[str], list[str]]:
    """Exported input and output names: ``frames`` + ``state.<name>``; ``logits`` + ``next.<name>``."""
    return ["frames"] + [f"state.{e.name}" for e in layout], ["logits"] + [f"next.{e.name}" for e in layout]

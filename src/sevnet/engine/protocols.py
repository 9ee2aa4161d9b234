"""What the Trainer needs from a dataset, as ``typing.Protocol``s (no base class to inherit).

Any map-style dataset with class names works (``TrainingDataset``: a VideoDataset, the synthetic
ones, a test's in-memory list); a dataset that can ship uint8 clips for the device to normalise
(``Uint8ClipDataset``: a VideoDataset) or trace the file each loader worker decodes
(``TracedDataset``) is recognised by those capabilities with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class ClipStats(Protocol):
    """The normalisation a dataset's clips get: per-channel RGB mean and std (a DataConfig has them)."""

    mean: Sequence[float]
    std: Sequence[float]


@runtime_checkable
class TrainingDataset(Protocol):
    """A map-style dataset the Trainer can train on: ``dataset[i]`` is a sample dict (``clip``, ``label``);
    ``classes`` names the labels (what a checkpoint records), ``multi_label`` picks the loss."""

    classes: Sequence[str]
    multi_label: bool

    @property
    def num_classes(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@runtime_checkable
class Uint8ClipDataset(Protocol):
    """A dataset that gives uint8 clips when ``uint8_clips`` is set, to be normalised on the device
    with its ``cfg``'s mean and std (a quarter of the bytes through the loader)."""

    uint8_clips: bool
    cfg: ClipStats


@runtime_checkable
class TracedDataset(Protocol):
    """A dataset whose loader workers write the path they are decoding under ``trace_dir`` (when set)."""

    trace_dir: Path | None

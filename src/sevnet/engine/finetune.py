"""``model.init_from``: start training from another run's weights (fine-tuning).

Loads every tensor whose name and shape match from a sevnet checkpoint (any run, any dataset)
or a plain safetensors state dict (keys with or without a ``model.`` prefix). The classifier is
left freshly initialised when the class count or the class names differ, as is any tensor whose
shape differs; the report says what was loaded, dropped and re-initialised. A checkpoint that fits
fewer than half of the model's tensors (another architecture) is an error, not a silent fresh start.
Only safetensors are read: a pickled file is refused, never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .card import ModelCard
from .checkpoint import (
    CheckpointError,
    checked_checkpoint,
    is_sevnet_header,
    nonfinite_tensors,
    read_safetensors,
    unwrap_key,
    unwrap_model,
)


@dataclass
class InitReport:
    """What ``init_from_checkpoint`` did, tensor by tensor name."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)  # name -> why
    dropped: list[str] = field(default_factory=list)  # in the source, not in this model
    missing: list[str] = field(default_factory=list)  # in this model, not in the source

    def summary(self, limit: int = 12) -> str:
        def names(items: list[str]) -> str:
            shown = ", ".join(items[:limit])
            return f": {shown}" + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

        total = len(self.loaded) + len(self.reinitialised) + len(self.missing)
        lines = [f"model.init_from {self.source}: loaded {len(self.loaded)} of {total} tensors"]
        if self.reinitialised:
            reasons = sorted(set(self.reinitialised.values()))
            lines.append(f"  re-initialised {len(self.reinitialised)} ({'; '.join(reasons)})"
                         f"{names(list(self.reinitialised))}")  # fmt: skip
        if self.dropped:
            lines.append(f"  dropped {len(self.dropped)} not in this model{names(self.dropped)}")
        if self.missing:
            lines.append(f"  kept the initialisation of {len(self.missing)} not in the source{names(self.missing)}")
        return "\n".join(lines)


# Pretrained models shipped with the package, used by name: model.init_from=motion_prior_xs.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "weights"


def pretrained_names() -> list[str]:
    """Names ``model.init_from`` takes besides paths (the files in ``sevnet/weights``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def resolve_init_from(value: str | Path) -> Path:
    """A file as given, else a shipped pretrained model by name; neither is an error naming both."""
    path = Path(value)
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{value}.safetensors"
    if path.suffix == "" and len(path.parts) == 1 and shipped.is_file():
        return shipped
    names = ", ".join(pretrained_names()) or "none"
    raise CheckpointError(f"{path}: model.init_from: no such file, nor a shipped pretrained model (those: {names})")


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """(model tensors, class names or None) from a sevnet checkpoint or a plain safetensors file (a path,
    or the name of a shipped pretrained model); NaN/inf weights are refused (they would make every
    step's loss NaN, blamed on the learning rate)."""
    state, names = _read_state_dict(resolve_init_from(path))
    if bad := nonfinite_tensors(state):
        raise CheckpointError(f"{path}: model.init_from: weights are not finite (NaN/inf) in {', '.join(bad[:3])}")
    return state, names


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    tensors, header = read_safetensors(
        path, "model.init_from takes a sevnet checkpoint or a safetensors state dict (not safetensors"
    )
    if is_sevnet_header(header):
        tensors, header = checked_checkpoint(path, tensors, header)
        card = ModelCard.from_meta(json.loads(header["meta"]))
        state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        names = None if card.lacks("class_names") else list(card.class_names)
        return {unwrap_key(k): v for k, v in state.items()}, names
    prefixed = bool(tensors) and all(k.startswith("model.") for k in tensors)
    state = {(k.removeprefix("model.") if prefixed else k): v for k, v in tensors.items()}
    return {unwrap_key(k): v for k, v in state.items()}, None


def classifier_keys(model: nn.Module, num_classes: int) -> set[str]:
    """State-dict keys of the last layer with ``num_classes`` outputs (the classifier)."""
    last = None
    for name, module in model.named_modules():
        out = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) and out == num_classes:
            last = name
    if last is None:
        return set()
    return {f"{last}.{k}" if last else k for k in model.get_submodule(last).state_dict()}


def classifier_parameters(model: nn.Module, num_classes: int) -> list[nn.Parameter]:
    """The classifier's parameters (``classifier_keys``): what ``optim.backbone_lr_scale`` leaves at the full lr."""
    keys = classifier_keys(model, num_classes)
    return [p for name, p in model.named_parameters() if name in keys]


def init_from_checkpoint(model: nn.Module, path: str | Path, class_names: list[str]) -> InitReport:
    """Load the matching tensors of ``path`` into ``model`` in place (see the module docstring)."""
    model = unwrap_model(model)
    source, source_classes = read_state_dict(path)
    own = model.state_dict()
    head = classifier_keys(model, len(class_names))
    head_reason = None
    if source_classes is not None and len(source_classes) != len(class_names):
        head_reason = f"classifier: {len(source_classes)} classes -> {len(class_names)}"
    elif source_classes is not None and list(source_classes) != list(class_names):
        head_reason = "classifier: class names differ"
    report = InitReport(str(path))
    take = {}
    for name, tensor in own.items():
        if name not in source:
            report.missing.append(name)
        elif head_reason and name in head:
            report.reinitialised[name] = head_reason
        elif source[name].shape != tensor.shape:
            report.reinitialised[name] = "shape differs"
        else:
            take[name] = source[name]
            report.loaded.append(name)
    report.dropped = [k for k in source if k not in own]
    body = len(own) - len(head)
    if len(report.loaded) < body / 2:  # loading a stray tensor or two would be a from-scratch run in disguise
        raise CheckpointError(
            f"{path}: model.init_from fits {len(report.loaded)} of this model's {body} tensors (not counting the "
            "classifier): it holds another architecture. Start from scratch with model.init_from= (empty), or give "
            "a checkpoint of this model and model.overrides"
        )
    model.load_state_dict(take, strict=False)
    return report

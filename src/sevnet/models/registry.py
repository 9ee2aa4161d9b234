"""Model registry: ``create_model(name, **overrides)`` and ``list_models()``, as in timm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sevnet.errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "sevnet" or the peer's source, e.g. "pytorchvideo", "torchvision"
    reference_input: tuple[int, int, int]  # (T, H, W) at which its FLOPs are usually quoted
    builder: Callable[..., nn.Module]
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    family: str,
    reference_input: tuple[int, int, int],
    builder: Callable[..., nn.Module],
    description: str = "",
) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelInfo(name, family, reference_input, builder, description)


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (peers appear only when their optional package is installed)."""
    return sorted(n for n, info in _REGISTRY.items() if family is None or info.family == family)


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model name {name!r}; available: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int = 400, **overrides: object) -> nn.Module:
    """Build a registered model; any keyword overrides its config (e.g. ``block="r3d"``)."""
    return model_info(name).builder(num_classes=num_classes, **overrides)

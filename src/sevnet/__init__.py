"""sevnet: efficient video action recognition with SEVNets."""

from typing import Any

from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "create_model", "list_models", "load", "load_weights"]

_LAZY = {"load", "load_weights", "Predictor"}  # inference API: imported on first use (keeps `sevnet --help` fast)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from .deploy import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'sevnet' has no attribute {name!r}")

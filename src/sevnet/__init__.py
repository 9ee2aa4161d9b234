"""sevnet: efficient video action recognition with SEVNets."""

from importlib import import_module
from typing import Any

from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "create_model", "list_models", "load", "load_model", "load_weights"]

# The inference API, imported on first use (keeps `sevnet --help` fast): name -> its module
_LAZY = {
    "load": "sevnet.deploy.predictor",
    "load_weights": "sevnet.deploy.predictor",
    "Predictor": "sevnet.deploy.predictor",
    "load_model": "sevnet.engine.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sevnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

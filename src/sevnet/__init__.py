"""sevnet: efficient video action recognition with SEVNets."""

from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models"]

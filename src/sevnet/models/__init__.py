"""Models: SEVNet family, ablation blocks, peers, registry."""

from . import peers as _peers  # noqa: F401  (registers peer models)
from . import sevnet as _sevnet  # noqa: F401  (registers sevnet_*)
from .blocks import BLOCKS, R2Plus1DLikeBlock, R3DLikeBlock, SEVModule, Shortcut
from .complexity import count_gmacs, count_params
from .registry import create_model, list_models, model_info
from .sevnet import SIZES, SEVNet, SEVNetConfig, Stage, build_sevnet

__all__ = [
    "BLOCKS",
    "SIZES",
    "R2Plus1DLikeBlock",
    "R3DLikeBlock",
    "SEVModule",
    "SEVNet",
    "SEVNetConfig",
    "Shortcut",
    "Stage",
    "build_sevnet",
    "count_gmacs",
    "count_params",
    "create_model",
    "list_models",
    "model_info",
]

"""Peer models for side-by-side comparisons, registered only when their package is installed.

torchvision's video ResNets and S3D ship with torchvision (a core dependency); X3D needs
PyTorchVideo (``scripts/setup.sh`` installs it for the benchmarks). sevnet never requires them.
"""

from __future__ import annotations

import importlib.util
import warnings

from torch import nn

from .registry import register_model

# X3D sizes as in PyTorchVideo's hub: (clip length, crop size, depth factor).
_X3D = {"xs": (4, 160, 2.2), "s": (13, 160, 2.2), "m": (16, 224, 2.2)}


def _build_x3d(size: str, num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    t, crop, depth_factor = _X3D[size]
    with warnings.catch_warnings():  # PyTorchVideo scripts a helper with torch.jit.script: a warning no user can act on
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        from pytorchvideo.models.x3d import create_x3d

        model = create_x3d(
            input_clip_length=t,
            input_crop_size=crop,
            depth_factor=depth_factor,
            model_num_class=num_classes,
            dropout_rate=dropout,
        )
    # X3D's head pools with a fixed kernel equal to the whole final feature map at its reference
    # input; an adaptive pool is identical there and also accepts other clip sizes.
    model.blocks[-1].pool.pool = nn.AdaptiveAvgPool3d(1)
    return model


def _build_torchvision(name: str, num_classes: int = 400, dropout: float | None = None) -> nn.Module:
    import torchvision.models.video as tvv

    kwargs = {} if dropout is None or name != "s3d" else {"dropout": dropout}
    return getattr(tvv, name)(weights=None, num_classes=num_classes, **kwargs)


def register_peers() -> None:
    for tv_name, ref in (
        ("r3d_18", (16, 112, 112)),
        ("mc3_18", (16, 112, 112)),
        ("r2plus1d_18", (16, 112, 112)),
        ("s3d", (16, 224, 224)),
    ):
        register_model(
            tv_name,
            family="torchvision",
            reference_input=ref,
            builder=lambda name=tv_name, **kw: _build_torchvision(name, **kw),
            description=f"torchvision {tv_name}",
        )
    if importlib.util.find_spec("pytorchvideo") is not None:
        for size, (t, crop, _) in _X3D.items():
            register_model(
                f"x3d_{size}",
                family="pytorchvideo",
                reference_input=(t, crop, crop),
                builder=lambda size=size, **kw: _build_x3d(size, **kw),
                description=f"X3D-{size.upper()} (PyTorchVideo)",
            )


register_peers()

"""Optional dependencies, imported where they are needed with an error that says how to get them.

The runtime needs only torch, PyAV and friends; export and quantization need the ``deploy`` extra
(onnx, onnxruntime, openvino, nncf). Without it, ``sevnet export`` / ``quantize`` / an exported model
stop with one line naming the package and the install command instead of a bare ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import SevnetError

EXTRA_OF = {"onnx": "deploy", "onnxruntime": "deploy", "onnxscript": "deploy", "openvino": "deploy",
            "nncf": "deploy"}  # fmt: skip


class MissingDependencyError(SevnetError, ImportError):
    """An optional package a feature needs is not installed (the message gives the pip command)."""


def require(module: str, feature: str) -> ModuleType:
    """``import module``, or a MissingDependencyError naming ``feature`` and the extra that has it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = EXTRA_OF.get(top)
        how = f"pip install 'sevnet[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(
            f"{feature} needs the package '{top}', which is not installed ({err}): {how}"
        ) from err

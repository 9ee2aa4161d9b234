"""Every ``data.format``: imports the modules that register formats (``sevnet.data.registry``), then
names them. ``sevnet.data`` imports this module; no module of the package does, so a format module
never imports what lists it. A new format: one module with a ``@register_format`` decorator, imported here.
"""

from enum import StrEnum

from . import annotations, folder, synthetic
from .registry import format_names

REGISTERING_MODULES = (annotations, folder, synthetic)  # the built-in formats' modules (each registers its own)

FORMATS: tuple[str, ...] = format_names()

# The formats as an Enum (``DataFormat.folder``), built from the registry: the list of formats lives there only.
DataFormat = StrEnum("DataFormat", [(name, name) for name in FORMATS], module=__name__)  # type: ignore[misc]
DataFormat.__doc__ = "Which on-disk layout ``data.root`` holds: the registered formats (``sevnet.data.registry``)."

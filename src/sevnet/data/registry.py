"""The format registry: ``data.format`` name -> how its samples are read. The one list of formats.

A format is one module with a decorator: ``@register_format("ssv2")`` on an annotation parser
``(cfg, split) -> Annotation`` (samples on disk, read by ``VideoDataset``), or
``@register_dataset_format("synthetic")`` on a dataset builder ``(cfg, split, train) -> Dataset`` for a
format with no files. ``sevnet.data.formats`` imports the modules that register formats (the package
imports it); ``DataConfig`` checks ``data.format`` against ``format_names()`` and ``DataFormat`` is built
from it. This module imports nothing from sevnet, so any module may register into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

AnnotationParser = Callable[[Any, str], Any]  # (DataConfig, split) -> Annotation
DatasetBuilder = Callable[[Any, str, bool], Any]  # (DataConfig, split, train) -> Dataset
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FormatSpec:
    """One ``data.format``: an annotation parser (samples on disk, read by ``VideoDataset``), or for a
    format with no files (``synthetic``) a dataset builder."""

    name: str
    parse: AnnotationParser | None = None
    dataset: DatasetBuilder | None = None


FORMAT_REGISTRY: dict[str, FormatSpec] = {}


def register_format(
    name: str, parse: AnnotationParser | None = None, dataset: DatasetBuilder | None = None
) -> Callable[[F], F] | None:
    """Register format ``name`` with exactly one of ``parse`` / ``dataset``; with neither, a decorator that
    registers the function it decorates as the parser (``@register_format("ssv2")``)."""
    if parse is None and dataset is None:

        def decorator(fn: F) -> F:
            register_format(name, parse=fn)
            return fn

        return decorator
    if parse is not None and dataset is not None:
        raise TypeError(f"format {name!r}: give exactly one of parse= or dataset=")
    if name in FORMAT_REGISTRY:
        raise ValueError(f"format {name!r} is registered twice")
    FORMAT_REGISTRY[str(name)] = FormatSpec(str(name), parse, dataset)
    return None


def register_dataset_format(name: str) -> Callable[[F], F]:
    """A decorator that registers a dataset builder ``(cfg, split, train) -> Dataset`` as format ``name``."""

    def decorator(fn: F) -> F:
        register_format(name, dataset=fn)
        return fn

    return decorator


def format_names() -> tuple[str, ...]:
    """The registered format names, in registration order."""
    return tuple(FORMAT_REGISTRY)


def format_spec(name: str) -> FormatSpec:
    if name not in FORMAT_REGISTRY:
        known = ", ".join(FORMAT_REGISTRY)
        raise ValueError(f"no parser registered for data.format {str(name)!r}; registered: {known}")
    return FORMAT_REGISTRY[name]

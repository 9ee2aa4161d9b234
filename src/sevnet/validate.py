"""Range checks for config values: one rule per key, checked when a config section is made.

Why here and not where a value is used: a bad value found at use is found late (after the frame
cache was built) and blamed on something else (``optim.lr=-1`` surfaced as torch's "Invalid
learning rate: -0.25", the scaled value; ``data.mean=[nan, ...]`` as a NaN loss "lower optim.lr").
Every number is also checked to be finite (``math.isfinite``): NaN passes every ``<``/``>`` test
that is written as a refusal, so the rules here say what a value must be, not what it must not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sevnet.errors import ConfigError

Rule = tuple[Callable[[float], bool], str]  # (test on a finite number, what the key must be)


def at_least(low: float, kind: str = "a number", note: str = "") -> Rule:
    return (lambda v: v >= low), f"{kind} >= {low:g}{note}"


def above(low: float, kind: str = "a number") -> Rule:
    return (lambda v: v > low), f"{kind} > {low:g}"


def between(low: float, high: float, high_open: bool = False) -> Rule:
    if high_open:
        return (lambda v: low <= v < high), f"a number in [{low:g}, {high:g})"
    return (lambda v: low <= v <= high), f"a number in [{low:g}, {high:g}]"


def is_number(value: Any) -> bool:
    """A real, finite number (not a bool, not NaN or inf)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_values(section: str, obj: Any, rules: dict[str, Rule]) -> None:
    """A ConfigError naming ``section.key`` for the first value of ``obj`` that breaks its rule (a list
    value: each element)."""
    for key, (test, what) in rules.items():
        value = getattr(obj, key)
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not all(is_number(v) and test(v) for v in values):
            each = " (each value)" if isinstance(value, list | tuple) else ""
            raise ConfigError(f"{section}.{key} must be {what}{each}, got {value!r}")

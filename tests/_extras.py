"""Optional packages (the deploy extra): tests of a feature that needs one skip without it. The
README's test command installs every extra, so CI runs them all; a slim GPU check may not."""

from __future__ import annotations

import importlib


def has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True

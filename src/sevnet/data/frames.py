"""Frame folders' images, named any way: which files are frames, and their order (natural name order).

No sevnet imports: the decoder (``video.read_sorted_frames``) and the folder format both use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that compares digit runs as numbers, so ``frame_2.jpg`` comes before ``frame_10.jpg``
    (zero-padded names sort as they would alphabetically)."""
    return tuple(
        (0, int(part), part) if part.isdigit() else (1, part.lower(), part) for part in re.split(r"(\d+)", name)
    )


def list_frame_images(folder: str | Path) -> list[Path]:
    """The frames of a frame folder: its .jpg/.jpeg/.png files (not hidden), in natural name order."""
    folder = Path(folder)
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.is_file() and not e.name.startswith(".")]
    except OSError:
        return []
    images = [n for n in names if Path(n).suffix.lower() in IMAGE_EXTENSIONS]
    return [folder / n for n in sorted(images, key=natural_key)]

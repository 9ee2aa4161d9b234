"""Which class a flipped clip belongs to, read from the class names.

A mirrored video keeps its class in most datasets (Kinetics, UCF101: flip is a standard augmentation)
but not where a class names a direction: "pushing something from left to right" becomes "... from right
to left", "turning clockwise" becomes "turning counter-clockwise". MMAction2's Something-Something
configs spell such pairs out by label number (``flip_label_map``); here they are found by swapping the
direction words in the names, so a folder of the user's own classes gets the same treatment unasked.

``mirror_labels(names)[i]`` is the label of class i's mirror image: i itself when its name holds no
direction word, the partner's label when swapping the words names another class, and None when it
names a direction whose mirror class does not exist (such clips are never flipped).

``axis="height"`` does the same for a clip flipped upside down (``data.vflip``): "up" <-> "down", and
clockwise <-> counter-clockwise again; left and right stay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Each direction word and its mirror image (matched as whole words, case-insensitive), per flipped axis.
_TURNS = {"clockwise": "counterclockwise", "counterclockwise": "clockwise", "cw": "ccw", "ccw": "cw"}
_SWAPS = {
    "left": "right",
    "right": "left",
    "leftward": "rightward",
    "rightward": "leftward",
    "leftwards": "rightwards",
    "rightwards": "leftwards",
    **_TURNS,
}
_VERTICAL_SWAPS = {
    "up": "down",
    "down": "up",
    "upward": "downward",
    "downward": "upward",
    "upwards": "downwards",
    "downwards": "upwards",
    **_TURNS,
}
_AXES = {"width": _SWAPS, "height": _VERTICAL_SWAPS}
_WORD = re.compile(r"[a-z]+")


def _canonical(name: str) -> str:
    """Lower case, "counter-clockwise" / "anti-clockwise" / "anticlockwise" as one word, words joined by
    single spaces (so "Turning_counter clockwise" and "turning counter-clockwise" compare equal)."""
    text = re.sub(r"(counter|anti)[\s_-]*clockwise", "counterclockwise", name.lower())
    return " ".join(_WORD.findall(text))


def mirror_labels(names: Sequence[str], axis: str = "width") -> list[int | None]:
    """For each class, the label of its version flipped along ``axis`` (width: left-right, the default;
    height: upside down; see the module docstring)."""
    swaps = _AXES[axis]
    index = {_canonical(name): label for label, name in enumerate(names)}
    out: list[int | None] = []
    for label, name in enumerate(names):
        words = _canonical(name).split()
        if not any(w in swaps for w in words):
            out.append(label)
            continue
        out.append(index.get(" ".join(swaps.get(w, w) for w in words)))
    return out


def has_names(names: Sequence[str]) -> bool:
    """False for the placeholders of a dataset without a class-name file ("3", "class_3")."""
    return not all(re.fullmatch(r"(class_)?\d+", name) for name in names)


def swapped_pairs(names: Sequence[str], partners: Sequence[int | None]) -> list[str]:
    """Each pair of classes that swap, once, as "a <-> b" (for the training log)."""
    return [f"{names[i]} <-> {names[j]}" for i, j in enumerate(partners) if j is not None and i < j]


def first_pairs(pairs: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` of ``pairs``, and how many more there are."""
    return "; ".join(pairs[:shown]) + (f"; ... ({len(pairs) - shown} more)" if len(pairs) > shown else "")


def describe(names: Sequence[str], mirror: Sequence[int | None], key: str = "flip") -> str:
    """One line for the training log: which classes swap under a flip and which are never flipped."""
    pairs = swapped_pairs(names, mirror)
    never = [names[i] for i, j in enumerate(mirror) if j is None]
    keep = len(names) - len(never) - 2 * len(pairs)
    parts = [f"{keep} class keeps its label" if keep == 1 else f"{keep} classes keep their label"]
    if pairs:
        parts.append("swapped: " + "; ".join(pairs))
    if never:
        parts.append("never flipped (a direction without its mirror class): " + "; ".join(never))
    return f"{key}: " + ", ".join(parts)


def vertical_suggestion(names: Sequence[str], videos_per_class: float, few: float = 20) -> str | None:
    """A hint for the training log when ``data.vflip`` is off but would likely pay: few videos per class,
    and classes named as each other's upside-down version ("tilting up" / "tilting down"). Off by
    default: upside down, a falling or poured thing rises, and "falling" names no direction to swap."""
    pairs = swapped_pairs(names, mirror_labels(names, axis="height"))
    if not pairs or videos_per_class > few:
        return None
    return (
        f"vflip: off. With {videos_per_class:.0f} videos per class, data.vflip=auto would also train clips upside "
        f"down, swapping {first_pairs(pairs)}: worth 1-4 points top-1 at 5 videos per class where things move "
        "any which way "
        '(docs/training.md, "Few examples per class"). Keep it off if gravity shows (falling, pouring, dropping).'
    )

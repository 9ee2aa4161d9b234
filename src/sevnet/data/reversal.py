"""Which class a clip played backwards belongs to, read from the class names.

Played backwards, most actions are no action at all, but a class that names a movement with a
direction in time often has its reversal among the classes: "moving something up" <-> "... down",
"opening something" <-> "closing something", "putting something into something" <-> "taking
something out of something", "zooming in" <-> "zooming out", "covering" <-> "uncovering",
"appearing" <-> "disappearing". Something-Something has dozens of such pairs, and a motion dataset of
the user's own often has them too. ``data.reverse: auto`` plays a training clip backwards (p = 1/2)
where its class has such a partner and gives it the partner's label: every pair's clips count for
both classes, and the model must read the order of frames to tell the pair apart.

``reversal_labels(names)[i]`` is the label of class i played backwards: the one other class whose name
is class i's with some of its time-direction words swapped (all, or a subset: "from left to right"
reverses to "from right to left", not "to right from left"), else None: never played backwards (a
class with no partner, or with several candidates, keeps its clips as they are).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from .mirror import first_pairs, swapped_pairs

# Time-direction words and their reversal (whole words after ``_canonical``). Prefix pairs (covering /
# uncovering, appearing / disappearing, ...) are found by ``_partner_word``.
_PAIRS = [
    ("up", "down"), ("upward", "downward"), ("upwards", "downwards"), ("in", "out"), ("into", "outof"),
    ("left", "right"), ("leftward", "rightward"), ("leftwards", "rightwards"), ("clockwise", "counterclockwise"),
    ("cw", "ccw"), ("to", "from"), ("closer", "away"), ("nearer", "farther"),
    ("approaching", "receding"), ("approaches", "recedes"), ("opening", "closing"), ("open", "close"),
    ("opens", "closes"), ("putting", "taking"), ("put", "take"), ("going", "coming"), ("entering", "leaving"),
    ("enters", "leaves"),
]  # fmt: skip
# Not "on" / "off": "light on" / "light off" are states, the same played backwards.
_SWAPS = {a: b for x, y in _PAIRS for a, b in ((x, y), (y, x))}
_PREFIXES = ("un", "dis")  # covering / uncovering, appearing / disappearing
_WORD = re.compile(r"[a-z]+")
_MAX_WORDS = 8  # time-direction words in one name whose subsets are tried (2**8 candidates at most)


def _canonical(name: str) -> str:
    """Lower case; "counter-clockwise" / "anticlockwise" and "out of" as one word; single spaces."""
    text = re.sub(r"(counter|anti)[\s_-]*clockwise", "counterclockwise", name.lower())
    text = re.sub(r"\bout[\s_-]+of\b", "outof", text)
    return " ".join(_WORD.findall(text))


def _partner_word(word: str, vocabulary: set[str]) -> str | None:
    """The time reversal of ``word``: from the list, or by a prefix ("uncovering" <-> "covering") when the
    other form occurs in some class name."""
    if word in _SWAPS:
        return _SWAPS[word]
    for prefix in _PREFIXES:
        if word.startswith(prefix) and word[len(prefix) :] in vocabulary:
            return word[len(prefix) :]
        if prefix + word in vocabulary:
            return prefix + word
    return None


def reversal_labels(names: Sequence[str]) -> list[int | None]:
    """For each class, the label of its clips played backwards, or None (see the module docstring)."""
    canonical = [_canonical(name).split() for name in names]
    index = {" ".join(words): label for label, words in enumerate(canonical)}
    vocabulary = {w for words in canonical for w in words}
    out: list[int | None] = []
    for label, words in enumerate(canonical):
        swappable = [(i, p) for i, w in enumerate(words) if (p := _partner_word(w, vocabulary)) is not None]
        swappable = swappable[:_MAX_WORDS]
        found = set()
        for r in range(1, len(swappable) + 1):
            for subset in itertools.combinations(swappable, r):
                candidate = list(words)
                for i, partner in subset:
                    candidate[i] = partner
                other = index.get(" ".join(candidate))
                if other is not None and other != label:
                    found.add(other)
        out.append(found.pop() if len(found) == 1 else None)
    # a pair is only a pair both ways ("a" reverses to "b" and "b" to "a")
    return [j if j is not None and out[j] == i else None for i, j in enumerate(out)]


def describe(names: Sequence[str], reversal: Sequence[int | None]) -> str:
    """One line for the training log: which classes swap when played backwards."""
    pairs = swapped_pairs(names, reversal)
    if not pairs:
        return "reverse: auto found no pair of classes that are each other's reversal: no clip is played backwards"
    rest = len(names) - 2 * len(pairs)
    others = {0: "every class has one", 1: "1 other class never"}.get(rest, f"{rest} other classes never")
    return f"reverse: played backwards with the label swapped: {'; '.join(pairs)} ({others})"


FEW_VIDEOS_PER_CLASS = 20  # up to here, data.reverse=auto measured +3-12 points top-1 (docs/training.md)


def suggestion(names: Sequence[str], videos_per_class: float) -> str | None:
    """A hint for the training log when ``data.reverse`` is off but would likely pay: few videos per
    class, and classes named as each other's reversal in time. Off by default, because a pair of
    states ("thumb up" / "thumb down") is named like a pair of motions and must not be swapped."""
    reversal = reversal_labels(names)
    pairs = swapped_pairs(names, reversal)
    if not pairs or videos_per_class > FEW_VIDEOS_PER_CLASS:
        return None
    return (
        f"reverse: off. With {videos_per_class:.0f} videos per class, data.reverse=auto would also train each "
        f"clip played backwards as its pair's class ({first_pairs(pairs)}): worth 3-12 points top-1 at 5-15 "
        "videos per class "
        '(docs/training.md, "Few examples per class"). Keep it off if a pair names two states, not two '
        'motions ("thumb up" / "thumb down").'
    )

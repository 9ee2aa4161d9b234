"""The README, the docs and the shipped configs read as a product, not a lab notebook: no tracker
items, no dated reruns, no working notes; every local link points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROSE = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "src/sevnet/configs").glob("*.yaml")),
]
NOTEBOOK = {
    "a tracker item": re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    "a date": re.compile(r"\b20\d\d-\d\d-\d\d\b|\b20\d\d-\d\d\b"),
    "a rerun's history": re.compile(r"\bRerun (?:at|that|on|\d)|\brerun (?:at|that evening|on 20)", re.IGNORECASE),
    "a time of day": re.compile(
        r"\b(?:this|that|the same) (?:morning|afternoon|evening|day)\b|\b\d\d:\d\d-\d\d:\d\d\b"
    ),
    "a working session": re.compile(r"\b(?:this|a|the|project's) sessions?\b|\ba helper, ", re.IGNORECASE),
}


def test_prose_has_no_tracker_words_dates_or_working_notes() -> None:
    found = []
    for path in PROSE:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in NOTEBOOK.items():
                if match := pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {match.group(0)!r}")
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_are_for() -> None:
    notes = ["Rerun 2026-11-29 on the same machine", "the >= 90% target of issue 10", "measured 22:00-22:12",
             "that afternoon the host ran slower", "No GPU was available to this project's sessions"]  # fmt: skip
    for note in notes:
        assert any(p.search(note) for p in NOTEBOOK.values()), note
    assert not any(p.search("rerun it to get your machine's figures") for p in NOTEBOOK.values())


def test_local_links_in_the_readme_and_docs_resolve() -> None:
    broken = []
    for path in PROSE[: -len(list((REPO / "src/sevnet/configs").glob("*.yaml")))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" not in target and not (path.parent / target).exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert not broken, broken

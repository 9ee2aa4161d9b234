"""Progress and run-log lines that read well on a terminal and in a redirected file alike.

On a terminal, ``progress_bar`` is a tqdm bar (redrawn in place). Anywhere else (``> train.log
2>&1``, a job scheduler, CI) a bar's carriage-return redraws would flood the file, so it prints one
plain line per ``every`` of the way instead, with the rate and the time left. ``say`` prints a line
and also appends it to the run logs open under ``log_to`` (a run's ``<out_dir>/train.log``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

_OPEN_LOGS: dict[Path, TextIO] = {}  # train.log files that say() appends to, while log_to holds them


def say(line: str, file: TextIO | None = None) -> None:
    """Print ``line`` (stdout unless ``file``) and append it to every open run log."""
    print(line, file=file or sys.stdout, flush=True)
    for handle in _OPEN_LOGS.values():
        handle.write(line + "\n")
        handle.flush()


@contextlib.contextmanager
def log_to(path: Path | None, fresh: bool = False) -> Iterator[None]:
    """While the block runs, ``say`` also appends to ``path`` (created with its folder; emptied first
    if ``fresh``). A path already open (a nested call) is left to the outer block; None does nothing."""
    if path is None or path.resolve() in _OPEN_LOGS:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    with path.open("w" if fresh else "a", encoding="utf-8") as handle:
        _OPEN_LOGS[key] = handle
        try:
            yield
        finally:
            del _OPEN_LOGS[key]


def on_terminal() -> bool:
    """Whether progress bars can be redrawn in place: stderr (where tqdm draws) is a terminal."""
    return sys.stderr.isatty()


class LineProgress:
    """The part of tqdm's interface sevnet uses (iterate or ``update``, ``set_postfix``, ``close``),
    printed as one line each time another ``every`` of ``total`` is done (none for fewer than
    ``min_total`` items: a short loop ends before a line would help), and at the end if ``final``."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int, desc: str, unit: str = "it",
                 initial: int = 0, every: float = 0.25, min_total: int = 8, final: bool = False) -> None:  # fmt: skip
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.start_n = initial
        self.every, self.final = every, final
        self.enabled = total >= min_total
        self.postfix: dict[str, Any] = {}
        self.started = time.perf_counter()
        self._next_mark = (int(initial / total / every) + 1) * every if total else 1.0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, values: dict[str, Any]) -> None:
        self.postfix = dict(values)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.enabled and self.n < self.total and self.n >= self._next_mark * self.total:
            say(self.line())
            while self._next_mark * self.total <= self.n:
                self._next_mark += self.every

    def close(self) -> None:
        if self.final and self.total and self.n >= self.total:
            say(self.line())
            self.final = False

    def line(self) -> str:
        """e.g. ``caching train frames: 45/90 videos (50%), 7.9 videos/s, 6 s left``."""
        elapsed = time.perf_counter() - self.started
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        units = self.unit + ("es" if self.unit.endswith(("s", "h")) else "s")
        parts = [f"{self.desc}: {self.n}/{self.total} {units} ({self.n / self.total:.0%})"]
        parts += [f"{k} {v}" for k, v in self.postfix.items()] or [f"{rate:.1f} {units}/s"]
        if self.n < self.total and rate > 0:
            parts.append(f"{format_seconds((self.total - self.n) / rate)} left")
        elif self.n >= self.total:
            parts.append(f"{format_seconds(elapsed)}")
        return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int, desc: str, unit: str = "it",
                 enabled: bool = True, initial: int = 0, final: bool = False, **bar: Any) -> Any:  # fmt: skip
    """A tqdm bar on a terminal, a ``LineProgress`` elsewhere, nothing (a disabled tqdm) if not ``enabled``.
    ``bar``: further tqdm options (leave, dynamic_ncols, ...), used on a terminal only."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, **bar)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, final=final)

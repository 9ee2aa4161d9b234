"""``sevnet data check``: read every sample of a dataset once and say which files are bad, and why,
before a training run finds out one skipped batch at a time.

Each file is decoded in full in a worker process that checks one file at a time, so a decoder that
crashes its process (or hangs) costs that one file, reported as ``crashed``, not the scan. The
findings go to a CSV report and to an exclude list that training reads as ``data.exclude_list``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import multiprocessing as mp
import os
import signal
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from .annotations import AnnotationError, parse_annotation
from .config import DataConfig
from .folder import list_frame_images

# Most severe first: a file's status is the first that applies; its reason lists every finding.
STATUSES = ("missing", "empty", "unreadable", "crashed", "truncated", "corrupt", "too_short", "oversized", "vfr")
# Excluded by default: files training would skip, or train on wrongly (repeated or cut frames), or
# decode slowly. A variable frame rate is read correctly (docs/data.md), so it is only reported.
DEFAULT_EXCLUDE = ("missing", "empty", "unreadable", "crashed", "truncated", "corrupt", "too_short", "oversized")
DEFAULT_MAX_PIXELS = 1920 * 1080  # above Full HD: decoding costs far more than the 112-224 px clips need
REPORT_COLUMNS = ("path", "split", "class", "status", "reason", "frames", "width", "height", "fps")


@dataclass
class Finding:
    """What reading one file found (picklable: it comes back from a worker process)."""

    status: str = "ok"
    reason: str = ""
    frames: int | None = None  # frames (or images) that decode
    width: int | None = None
    height: int | None = None
    fps: float | None = None


# --- inspecting one file (runs in a worker) ------------------------------------------------------
def _add(problems: list[tuple[str, str]], status: str, reason: str) -> None:
    problems.append((status, reason))


def _verdict(found: Finding, problems: list[tuple[str, str]]) -> Finding:
    if problems:
        found.status = min((s for s, _ in problems), key=STATUSES.index)
        found.reason = "; ".join(r for _, r in problems)
    return found


def _file_problem(path: Path) -> Finding | None:
    from sevnet.video import not_a_file

    if not path.exists():
        return Finding("missing", "no such file")
    if reason := not_a_file(path):
        return Finding("unreadable", reason)
    if path.stat().st_size == 0:
        return Finding("empty", "0 bytes")
    return None


def _decode_all(container: Any, stream: Any) -> tuple[int, list[int], str | None]:
    """Decode every frame: (frames decoded, their timestamps, the first error). Errors in one packet
    do not stop the count, so a damaged middle and a cut-off end are told apart."""
    import av

    decoded, stamps, error = 0, [], None
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                error = error or str(err)
                continue
            decoded += len(frames)
            stamps += [f.pts for f in frames if f.pts is not None]
    except av.FFmpegError as err:
        error = error or f"reading stopped: {err}"
    return decoded, sorted(stamps), error


def _timing(stamps: list[int], time_base: float, fps: float) -> tuple[float, float, list[float]]:
    """(typical frame interval, seconds the frames cover, every interval) from frame timestamps."""
    intervals = [(b - a) * time_base for a, b in itertools.pairwise(stamps)]
    typical = statistics.median(intervals) if intervals else 1.0 / fps
    covered = (stamps[-1] - stamps[0]) * time_base + typical if stamps else 0.0
    return typical, covered, intervals


def _vfr(intervals: list[float], typical: float) -> str | None:
    odd = [d for d in intervals if d > 1.5 * typical or d < 0.5 * typical]
    if len(intervals) < 2 or not odd:
        return None
    low, high = min(intervals), max(intervals)
    return f"variable frame rate: {len(odd)} of {len(intervals)} frame intervals off the typical {typical * 1000:.0f} ms ({low * 1000:.0f} to {high * 1000:.0f} ms)"  # noqa: E501


def inspect_video(path: Path, min_frames: int, max_pixels: int) -> Finding:
    """Open and decode a whole video; find what is wrong with it, if anything. Opening, timing and the
    truncation rule are ``sevnet.video``'s (a frame size over the limit is reported, not refused)."""
    from sevnet.video import DecodeError, frame_timing, open_video, stream_duration, truncation_reason

    found = _file_problem(path)
    if found is not None:
        return found
    try:
        container = open_video(path, max_pixels=0)
    except DecodeError as err:
        return Finding("unreadable", str(err).removeprefix(f"{path}: "))
    with container:
        stream = container.streams.video[0]
        timing = frame_timing(stream)
        duration = stream_duration(container, stream, timing)
        found = Finding(width=stream.codec_context.width, height=stream.codec_context.height, fps=round(timing.fps, 3))
        decoded, stamps, error = _decode_all(container, stream)
        header_frames = stream.frames
    found.frames = decoded
    if decoded == 0:
        return dataclasses.replace(found, status="unreadable", reason=f"no frame decodes ({error or 'no frames'})")
    problems: list[tuple[str, str]] = []
    typical, covered, intervals = _timing(stamps, timing.time_base, timing.fps)
    cut = truncation_reason(decoded, header_frames, covered, duration, typical, verb="decode")
    if cut:
        _add(problems, "truncated", cut + (f" ({error})" if error else ""))
    elif error:
        _add(problems, "corrupt", f"decoding errors ({error}); {decoded} frames decode")
    _check_size(problems, found, decoded, min_frames, max_pixels)
    vfr = _vfr(intervals, typical)
    if vfr:
        _add(problems, "vfr", vfr)
    return _verdict(found, problems)


def _check_size(problems: list[tuple[str, str]], found: Finding, frames: int, min_frames: int, max_pixels: int) -> None:
    if frames < min_frames:
        _add(problems, "too_short", f"{frames} frames, fewer than data.num_frames={min_frames}")
    pixels = (found.width or 0) * (found.height or 0)
    if pixels > max_pixels:
        _add(problems, "oversized", f"{found.width}x{found.height} = {pixels} pixels > max {max_pixels}")


def inspect_frame_folder(path: Path, min_frames: int, max_pixels: int) -> Finding:
    """Read every image of a frame folder (frames in name order, as the folder format reads them)."""
    from PIL import Image

    if not path.is_dir():
        return Finding("missing", "no such frame folder")
    images = list_frame_images(path)
    if not images:
        return Finding("empty", "no .jpg/.jpeg/.png images")
    found, bad, sizes = Finding(frames=0), [], {}
    for image in images:
        try:
            with Image.open(image) as im:
                im.load()
                found.width, found.height = found.width or im.width, found.height or im.height
                sizes.setdefault((im.width, im.height), image.name)
            found.frames += 1
        except (OSError, SyntaxError, ValueError) as err:
            bad.append(f"{image.name}: {err}")
    problems: list[tuple[str, str]] = []
    if not found.frames:
        _add(problems, "unreadable", f"no image decodes (first: {bad[0]})")
    elif bad:
        _add(problems, "corrupt", f"{len(bad)} of {len(images)} images do not decode (first: {bad[0]})")
    if len(sizes) > 1:  # training stacks the frames of a clip: it would fail on this folder
        (w0, h0), first = next(iter(sizes.items()))
        (w1, h1), other = list(sizes.items())[1]
        _add(problems, "unreadable", f"images of {len(sizes)} sizes: {first} is {w0}x{h0}, {other} is {w1}x{h1}")
    _check_size(problems, found, found.frames, min_frames, max_pixels)
    return _verdict(found, problems)


def inspect_sample(path: str, frames: bool, min_frames: int, max_pixels: int) -> Finding:
    """One sample (a video file or a frame folder), as a worker process checks it."""
    inspect = inspect_frame_folder if frames else inspect_video
    return inspect(Path(path), min_frames, max_pixels)


# --- worker processes, one file at a time each ---------------------------------------------------
def _serve(conn: Any, fn: Callable[..., Finding]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            result = fn(*task)
        except Exception as err:  # a bug or an odd file must not end the worker either
            result = Finding("unreadable", f"checker error: {err!r}")
        conn.send(result)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class _Worker:
    """A process that checks one task at a time, so a crash is pinned on the task it was running."""

    def __init__(self, ctx: Any, fn: Callable[..., Finding]) -> None:
        self.ctx, self.fn = ctx, fn
        self.index: int | None = None  # the task in flight
        self.since = 0.0
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_serve, args=(child, self.fn), daemon=True)
        self.proc.start()
        child.close()

    def submit(self, index: int, task: tuple) -> None:
        self.index, self.since = index, time.monotonic()
        try:
            self.conn.send(task)
        except (BrokenPipeError, OSError):  # died while idle: replace it, then send again
            self._restart()
            self.conn.send(task)

    def _restart(self) -> None:
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self._start()

    def poll(self, timeout: float) -> tuple[int, Finding] | None:
        """The finished (index, finding), a crash or hang as a ``crashed`` finding, or None if busy."""
        dead = False
        if self.conn.poll():
            try:
                result = self.conn.recv()
                index, self.index = self.index, None
                return index, result
            except (EOFError, OSError):
                dead = True
        if not dead and self.proc.is_alive():
            if time.monotonic() - self.since <= timeout:
                return None
            self.proc.kill()
            reason = f"decoder hung: no result after {timeout:.0f} s (worker killed)"
        else:
            self.proc.join(timeout=5)
            reason = f"decoder crashed: its worker process died ({_death(self.proc.exitcode)})"
        index, self.index = self.index, None
        self._restart()
        return index, Finding("crashed", reason)

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_isolated(fn: Callable[..., Any], tasks: list[tuple], workers: int, timeout: float = 300.0,
                 progress: bool = True, desc: str = "checking") -> list[Any]:  # fmt: skip
    """``fn(*task)`` for every task in ``workers`` processes (0: in this process, no isolation).
    A worker that dies or hangs past ``timeout`` seconds costs its one task and is replaced: its result is
    a ``crashed`` Finding (an exception in ``fn``: an ``unreadable`` one). ``desc`` labels the progress bar."""
    from tqdm.auto import tqdm

    results: list[Finding | None] = [None] * len(tasks)
    with tqdm(total=len(tasks), disable=None if progress else True, unit="file", desc=desc) as bar:  # None: no tty
        if workers <= 0:
            for i, task in enumerate(tasks):
                results[i] = fn(*task)
                bar.update(1)
            return results  # type: ignore[return-value]
        todo = deque(range(len(tasks)))
        slots = [_Worker(mp.get_context(), fn) for _ in range(min(workers, len(tasks)))]
        try:
            while True:
                for w in slots:
                    if w.index is None and todo:
                        _submit(w, todo, tasks)
                busy = [w for w in slots if w.index is not None]
                if not busy:
                    break
                wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=min(1.0, timeout))
                for w in busy:
                    done = w.poll(timeout)
                    if done is not None:
                        results[done[0]] = done[1]
                        bar.update(1)
        finally:
            for w in slots:
                w.stop()
    return results  # type: ignore[return-value]


def _submit(worker: _Worker, todo: deque, tasks: list[tuple]) -> None:
    index = todo.popleft()
    worker.submit(index, tasks[index])


# --- a whole dataset -------------------------------------------------------------------------------
@dataclass
class Entry:
    """One sample of one split, as the report lists it."""

    split: str
    rel: str  # relative to data.root
    cls: str
    path: Path
    frames: bool


@dataclass
class CheckReport:
    rows: list[dict[str, Any]]
    report_path: Path
    exclude_path: Path
    excluded: list[str]
    ignored: list[str] = field(default_factory=list)  # format folder: stray files (not samples)
    notes: list[str] = field(default_factory=list)  # splits that were not checked, and why

    @property
    def problems(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]

    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)


def _class_name(classes: list[str], target: int | list[int]) -> str:
    targets = target if isinstance(target, list) else [target]
    return "|".join(classes[t] for t in targets if 0 <= t < len(classes))


def _split_note(cfg: DataConfig, split: str, err: Exception) -> str:
    """Why a split was not checked. A class-folder tree draws train and val only: its lack of a test
    split is the layout, not a problem to fix."""
    from .folder import split_folders

    if cfg.format == "folder" and not cfg.split_file and split_folders(Path(cfg.root)) is None:
        return f"{split}: none (a class-folder tree is drawn into train and val; a test split is optional)"
    return f"{split}: not checked ({err})"


def collect_entries(cfg: DataConfig) -> tuple[list[Entry], list[str], list[str]]:
    """Every sample of every split that exists (the exclude list is not applied: a check looks at
    everything). Returns (entries, ignored stray files, notes on splits not checked)."""
    if cfg.format == "synthetic":
        raise ConfigError("data.format 'synthetic' is rendered in memory: there are no files to check")
    cfg = dataclasses.replace(cfg, exclude_list=None)
    root = Path(cfg.root)
    entries, ignored, notes = [], [], []
    for split in ("train", "val", "test"):
        try:
            ann = parse_annotation(cfg, split)
        except AnnotationError:
            raise
        except (FileNotFoundError, ValueError) as err:
            if split == "train":
                raise
            notes.append(_split_note(cfg, split, err))
            continue
        ignored = ignored or ann.ignored
        for s in ann.samples:
            rel = Path(os.path.relpath(s.path, root)).as_posix()
            entries.append(Entry(split, rel, _class_name(ann.classes, s.target), s.path, s.frames))
        for m in ann.missing:
            entries.append(Entry(split, Path(os.path.relpath(m, root)).as_posix(), "", Path(m), False))
    return entries, ignored, notes


def _unvalidated_classes(entries: list[Entry]) -> list[str]:
    """A note naming the classes with training samples but none in a validation split that exists
    (e.g. a class folder holding a single video): their accuracy is never measured."""
    val = {e.cls for e in entries if e.split == "val"}
    missing = sorted({e.cls for e in entries if e.split == "train" and e.cls} - val) if val else []
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"warning: {len(missing)} class(es) have no validation sample (a single video?): {shown}"]


def check_dataset(cfg: DataConfig, out_dir: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 2,
                  exclude: tuple[str, ...] = DEFAULT_EXCLUDE, timeout: float = 300.0,
                  progress: bool = True) -> CheckReport:  # fmt: skip
    """Check every sample; write ``report.csv`` and ``exclude.txt`` (paths relative to data.root of the
    files whose status is in ``exclude``) to ``out_dir``."""
    unknown = sorted(set(exclude) - set(STATUSES))
    if unknown:
        raise InputError(f"unknown status(es) {unknown} to exclude; choose from {', '.join(STATUSES)}")
    from sevnet.engine.rundir import check_writable

    check_writable(out_dir, "data check --out")  # before the files are read, not after
    entries, ignored, notes = collect_entries(cfg)
    unique = list(dict.fromkeys((str(e.path), e.frames) for e in entries))  # a file listed twice is read once
    tasks = [(path, frames, cfg.num_frames, max_pixels) for path, frames in unique]
    found = dict(zip(unique, run_isolated(inspect_sample, tasks, workers, timeout, progress)))
    rows = []
    for e in entries:
        f = found[(str(e.path), e.frames)]
        rows.append({"path": e.rel, "split": e.split, "class": e.cls, "status": f.status, "reason": f.reason,
                     "frames": f.frames, "width": f.width, "height": f.height, "fps": f.fps})  # fmt: skip
    excluded = list(dict.fromkeys(r["path"] for r in rows if r["status"] in exclude))
    notes += _unvalidated_classes(entries)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report_path, exclude_path = out / "report.csv", out / "exclude.txt"
    with report_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    exclude_path.write_text("".join(f"{p}\n" for p in excluded), encoding="utf-8")
    return CheckReport(rows, report_path, exclude_path, excluded, ignored, notes)

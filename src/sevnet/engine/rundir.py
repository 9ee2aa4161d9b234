"""A run folder (``train.out_dir``) belongs to one run at a time.

``run_lock`` holds ``<out_dir>/.lock`` (the owner's pid and host) for a run's life: a second run on
the same folder is refused, naming the pid; a lock left by a process that no longer runs (kill -9)
is reported and taken over, so that ``--resume`` after a crash just works. ``check_new_run`` refuses
to start a fresh run in a folder that already holds one, unless the user says ``--overwrite``.
``remove_stale_temps`` deletes checkpoint temp files a killed save left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sevnet.errors import SevnetError

LOCK_NAME = ".lock"
# What --overwrite removes (the previous run's outputs; data caches and split.csv stay).
RUN_OUTPUTS = (
    "checkpoints",
    "summary.json",
    "metrics.csv",
    "training_curves.png",
    "tensorboard",
    "config.yaml",
    "skipped.csv",
)


class RunFolderError(SevnetError, RuntimeError):
    """The run folder is in use, already holds a run, or cannot be one; the message names it."""


def check_folder(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is a folder or could be made one (no file in the way); else a
    RunFolderError naming ``what`` (e.g. ``train.out_dir``) and the file in the way. Creates nothing."""
    path = Path(path)
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                where = "" if existing == path else f" ({existing} is a file)"
                raise RunFolderError(f"{what} {path} cannot be a folder{where}; a file is in the way")
            return path
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``path`` through a temporary file beside it (fsync, rename): a kill or a full disk mid-write
    leaves the previous version whole (summary.json, metrics.csv, config.yaml, skipped.csv), never half
    a file. A failure is a RunFolderError naming the file; the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        kept = "the previous version is intact" if path.exists() else "nothing was written"
        raise RunFolderError(f"{path}: could not write ({err.strerror or err}); {kept}") from None
    return path


def check_writable(path: str | Path, what: str) -> Path:
    """``path`` as a folder this process could write in, checked before any work by creating (and
    removing) a temporary file in it or, if it does not exist yet, in its nearest existing parent
    (nothing is left behind): a read-only or foreign folder is a RunFolderError naming ``what`` and
    the reason, not an Errno 30 traceback after the work is done."""
    path = check_folder(path, what)
    existing = next(p for p in (path, *path.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise RunFolderError(f"{what} {path}: cannot write there ({err.strerror or err})") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read_lock(lock: Path) -> tuple[int, str]:
    try:
        pid_text, _, host = lock.read_text().strip().partition(" ")
        return int(pid_text), host
    except (OSError, ValueError):
        return -1, ""


def _take_lock(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
    return True


def acquire(out_dir: Path) -> Path:
    """Create ``<out_dir>/.lock`` for this process, or raise ``RunFolderError`` naming who holds it."""
    check_folder(out_dir, "train.out_dir").mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_NAME
    for _ in range(3):
        if _take_lock(lock):
            return lock
        pid, host = _read_lock(lock)
        if pid > 0 and (host != socket.gethostname() or _pid_alive(pid)):
            where = f"pid {pid}" + (f" on {host}" if host else "")
            raise RunFolderError(
                f"{out_dir} is in use by another sevnet run ({where}; lock file {lock}). Wait for it to "
                f"finish, or choose another train.out_dir; delete the lock file only if no run uses the folder."
            )
        print(f"note: {lock} was left by pid {pid}, which is no longer running; taking it over", file=sys.stderr)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
    raise RunFolderError(f"{out_dir}: could not create the lock file {lock}")


_HELD: set[Path] = set()  # run folders this process holds the lock of (run_lock nests: train() and fit())


@contextlib.contextmanager
def run_lock(out_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``<out_dir>/.lock`` while the block runs (a no-op when not ``enabled``, e.g. DDP rank > 0,
    and inside an outer ``run_lock`` of the same folder)."""
    key = Path(out_dir).resolve()
    lock = acquire(out_dir) if enabled and key not in _HELD else None
    if lock is not None:
        _HELD.add(key)
    try:
        yield
    finally:
        if lock is not None:
            _HELD.discard(key)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def holds_run(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a run worth keeping: a checkpoint (to resume or use) or a finished run's
    summary. A run that stopped before its first checkpoint (bad data, a config error found late) left
    only its config and logs: nothing to resume, so a fresh run replaces them without ``--overwrite``."""
    checkpoints = out_dir / "checkpoints"
    return (out_dir / "summary.json").exists() or (checkpoints.is_dir() and any(checkpoints.glob("*.safetensors")))


def refuse_existing_run(out_dir: Path) -> None:
    """A RunFolderError if ``out_dir`` holds a run (what a fresh run without --overwrite must not touch)."""
    if holds_run(out_dir):
        finished = (out_dir / "checkpoints" / "model.safetensors").is_file()
        raise RunFolderError(
            f"{out_dir} already holds a {'finished' if finished else 'started'} run. Continue it with "
            f"--resume, train into another train.out_dir, or replace it with --overwrite"
        )


def check_new_run(out_dir: Path, overwrite: bool) -> None:
    """Refuse a fresh run in a folder that holds one; with ``overwrite``, remove that run's outputs (and
    always those of a run that stopped before its first checkpoint)."""
    if holds_run(out_dir) and not overwrite:
        refuse_existing_run(out_dir)
    for name in RUN_OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the ``.<name>.safetensors.*.tmp`` files an interrupted checkpoint save left in ``folder``."""
    stale = sorted(folder.glob(".*.safetensors.*.tmp")) if folder.is_dir() else []
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


# --- a graceful stop on SIGTERM / SIGINT ----------------------------------------------------------
class TrainingStopped(SevnetError):
    """Training was stopped by a signal after a clean checkpoint. ``exit_status`` is 128 + the signal
    (143 for SIGTERM, 130 for SIGINT), the shell's convention for "ended by this signal": a scheduler
    sees a run that did not finish, and the message says how to resume it."""

    def __init__(self, message: str, signum: int, quiet: bool = False) -> None:
        super().__init__(message)
        self.exit_status = 128 + signum
        self.quiet = quiet  # DDP ranks > 0: rank 0 says it


class StopSignals:
    """While active (the main thread of the process that entered it), SIGTERM and SIGINT request a
    stop at the next step boundary instead of killing the run: schedulers (SLURM, Kubernetes, spot
    instances) send SIGTERM some seconds before SIGKILL. A second signal stops at once
    (KeyboardInterrupt). Forked loader workers inherit the handler and ignore it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, announce: bool = True) -> None:
        self.received: int | None = None
        self.announce = announce
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the main process decides
            return
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        if self.announce:  # os.write: print() is not safe inside a signal handler
            name = signal.Signals(signum).name
            os.write(2, f"\n{name}: stopping after this step and saving a checkpoint (again: stop at once)\n".encode())

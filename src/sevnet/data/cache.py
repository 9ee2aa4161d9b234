"""Decoded-frame cache: decode every frame of every sample once, then train at in-memory speed.

On a small CPU machine, decoding competes with the training step every epoch. For a dataset that
fits, ``data.cache: memory | disk`` decodes each video (or frame folder) once, in loader worker
processes, resizes it so the short side is the largest scale any transform needs (never
upscaling), and stores the frames as uint8 in one flat file plus an index (per sample: byte
offset, frame count, height, width). The dataset then samples frame indices exactly as without
the cache and reads those frames from it, so the same transforms see (up to that one resize) the
same frames.

* ``disk``: ``<cache_dir>/<split>-<id>-<key>/frames.u8`` is memory-mapped. Workers share the
  page cache, a restarted or resumed run reuses it, and DDP ranks build it once (a file lock).
* ``memory``: built in a temporary folder, then read into one anonymous numpy array before the
  DataLoader forks its workers; forked workers share its pages copy-on-write (nothing writes
  to them). Chosen over a file in /dev/shm because a killed run would leave that file behind
  and Docker's /dev/shm is 64 MB by default. With the "spawn" start method each worker would get
  its own copy: use ``disk`` there.

The key is a hash of every file's (path, size, mtime) -- for a frame folder, of every file in it,
since an image rewritten in place leaves the folder's own mtime unchanged -- the sample list and the
settings that change the stored frames (short side, frame template, cache/decoder versions): a stale
cache is never read; a changed file or setting builds a new one and removes the old one. A reused
disk cache is checked before use (meta.json, index.npz and the size and mtime of frames.u8 that
the build recorded): a damaged one is named and rebuilt, never read and never blamed on the videos.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import torch
import torchvision
from av.video.reformatter import VideoReformatter
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchvision.transforms.v2 import functional as F

from sevnet.video import DecodeError, decoded_frames, fill_forward

from ..errors import ConfigError, SevnetError
from .annotations import Sample
from .config import CacheMode, DataConfig

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when what is stored, or how, changes: old caches then never match
CHUNK = 32  # frames resized at a time: bounds a worker's memory on long videos
LOAD_ERRORS = (DecodeError, OSError, RuntimeError, ValueError)  # what VideoDataset skips and counts


def cache_short_side(cfg: DataConfig) -> int:
    """The largest short side any transform resizes to: storing more would only cost memory."""
    return max(max(cfg.train_scale), cfg.eval_scale, cfg.eval_crop)


def default_cache_dir(cfg: DataConfig) -> Path:
    """``data.cache_dir``, else ``$XDG_CACHE_HOME/sevnet/frames`` (the trainer passes ``<out_dir>/cache``)."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sevnet" / "frames"


def with_run_cache_dir(data_cfg: DataConfig, out_dir: str | Path) -> DataConfig:
    """``data_cfg`` with ``cache_dir = <out_dir>/cache`` when the disk cache is on and no folder is set,
    so that a run's cache lives (and is recorded in config.yaml) with the run (a new object)."""
    if data_cfg.cache != CacheMode.disk or data_cfg.cache_dir:
        return data_cfg
    return dataclasses.replace(data_cfg, cache_dir=str(Path(out_dir) / "cache"))


class CacheDamaged(SevnetError):
    """A cache file that does not hold what its build wrote (truncated, replaced, garbage): named,
    and not one of ``LOAD_ERRORS``, so it is never skipped and counted as a bad video."""


def _stat(path: Path) -> list[Any]:
    """(size, mtime) of a file; of a folder (frame folder), its own and those of every file in it:
    an image rewritten in place changes its own mtime and size, not the folder's."""
    try:
        st = path.stat()
        if not path.is_dir():
            return [st.st_size, st.st_mtime_ns]
        with os.scandir(path) as entries:
            files = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
    except OSError:
        return [-1, -1]  # missing: its appearance later changes the key
    return [0, st.st_mtime_ns, files]


def cache_key(samples: Sequence[Sample], cfg: DataConfig) -> str:
    """Hash of all that decides the stored frames: files (path, size, mtime), sample list, settings."""
    h = hashlib.sha256()
    settings = {
        "version": CACHE_VERSION,
        "short_side": cache_short_side(cfg),
        "format": cfg.format,  # how a frame folder is read (template or name order)
        "frame_template": cfg.frame_template if any(s.frames for s in samples) else None,
        "torchvision": torchvision.__version__,  # the resize kernel
        "av": av.__version__,  # the decoder
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for s in samples:
        h.update(json.dumps([str(s.path), s.frames, s.num_frames, _stat(Path(s.path))]).encode())
    return h.hexdigest()[:20]


# --- decoding a whole sample (runs in build workers) ---------------------------------------------
def _decode_all(path: Path, num: int) -> Iterator[np.ndarray]:
    """Frames 0..num-1 by ``read_frames``' rules (``sevnet.video.fill_forward``: a gap gets the next
    frame; past the end, or after a broken tail, the last good frame), decoded once from the start."""
    to_rgb = VideoReformatter()  # one swscale context for the file (video.py's reason)
    for frame, filled in fill_forward(decoded_frames(path), range(num), str(path)):
        rgb = to_rgb.reformat(frame, format="rgb24").to_ndarray()
        for _ in filled:
            yield rgb


class FrameSource(Protocol):
    """What the cache decodes: ``VideoDataset``'s samples, frame count and (frame folder) reader, so
    that the cache holds what the dataset would read, whatever the format."""

    samples: list[Sample]

    def count_frames(self, sample: Sample) -> int: ...

    def load_frames(self, sample: Sample, indices: list[int]) -> torch.Tensor: ...


def _sample_frames(source: FrameSource, sample: Sample) -> Iterator[np.ndarray]:
    num = source.count_frames(sample)
    if sample.frames:
        for first in range(0, num, CHUNK):
            yield from source.load_frames(sample, list(range(first, min(first + CHUNK, num)))).numpy()
    else:  # one pass over the file, not a seek per chunk
        yield from _decode_all(Path(sample.path), num)


def _resize(frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Same kernel as the eval transform's ``v2.Resize`` (bilinear, antialiased, uint8): with
    ``eval_scale`` the largest scale, evaluation on cached frames is bit-identical."""
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    if tuple(video.shape[-2:]) != size:
        video = F.resize(video, list(size), antialias=True)
    return video.permute(0, 2, 3, 1).contiguous().numpy()


def _target_size(height: int, width: int, short: int) -> tuple[int, int]:
    """Short side ``short`` (torchvision's rounding), or the frame's own size if it is smaller."""
    if min(height, width) <= short:
        return height, width
    h, w = F._geometry._compute_resized_output_size((height, width), [short])
    return h, w


def decode_sample(source: FrameSource, sample: Sample, short: int) -> np.ndarray:
    """All frames of one sample as uint8 (N, H, W, 3), short side at most ``short``."""
    out: list[np.ndarray] = []
    chunk: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for frame in _sample_frames(source, sample):
        size = size or _target_size(frame.shape[0], frame.shape[1], short)
        chunk.append(frame)
        if len(chunk) == CHUNK:
            out.append(_resize(chunk, size))
            chunk = []
    if chunk:
        out.append(_resize(chunk, size))
    return np.concatenate(out)


class _DecodeJobs(Dataset):
    """One item per sample: (index, frames or None, reason or None). Errors are returned, as in
    ``VideoDataset``, so that a bad file is skipped and counted instead of stopping the build."""

    def __init__(self, source: FrameSource, short: int, trace_dir: Path) -> None:
        self.source, self.short, self.trace_dir = source, short, trace_dir

    def __len__(self) -> int:
        return len(self.source.samples)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        sample = self.source.samples[i]
        worker = get_worker_info()
        (self.trace_dir / f"worker-{worker.id if worker else 0}.txt").write_text(str(sample.path))
        try:
            return i, torch.from_numpy(decode_sample(self.source, sample, self.short)), None
        except LOAD_ERRORS as err:
            return i, None, str(err)


def _identity(item: Any) -> Any:
    return item  # batch_size=None: one sample per step, no collation


# --- the cache -------------------------------------------------------------------------------------
class FrameCache:
    """Frames of every sample in one flat uint8 buffer (memory-mapped file or in-RAM array)."""

    def __init__(self, folder: Path, in_memory: bool = False) -> None:
        meta, index = _read_checked(folder)
        self.key: str = meta["key"]
        self.folder: Path | None = None if in_memory else folder
        self.offsets, self.counts = index["offsets"], index["counts"]
        self.heights, self.widths = index["heights"], index["widths"]
        self.errors: dict[int, str] = {int(i): reason for i, reason in meta["errors"].items()}
        self.build_seconds: float = meta["build_seconds"]
        self.reused = False  # set by open_cache: True when an earlier build was found
        self._data: np.ndarray | None = None
        if in_memory:  # read now, before any DataLoader forks (its workers then share the pages)
            log.info("frame cache: reading %.1f MB into memory", self.nbytes / 1e6)
            self._data = np.fromfile(folder / "frames.u8", dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        return int((self.counts * self.heights * self.widths * 3).sum())

    @property
    def data(self) -> np.ndarray:
        if self._data is None:  # opened lazily: a memmap is not pickled to spawned workers
            path = self.folder / "frames.u8"
            self._data = np.memmap(path, np.uint8, "r") if path.stat().st_size else np.empty(0, np.uint8)
        return self._data

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.folder is not None:
            state["_data"] = None
        return state

    def num_frames(self, i: int) -> int:
        """Frame count of sample ``i``; a sample that failed to decode raises its original error."""
        if i in self.errors:
            raise DecodeError(self.errors[i])
        return int(self.counts[i])

    def frames(self, i: int, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` of sample ``i`` as uint8 (T, H, W, 3), like ``read_frames``."""
        num, h, w = int(self.counts[i]), int(self.heights[i]), int(self.widths[i])
        start = int(self.offsets[i])
        flat = self.data[start : start + num * h * w * 3]
        if flat.size != num * h * w * 3:  # the file shrank after it was checked: not this video's fault
            raise CacheDamaged(f"{self.folder}/frames.u8: truncated while in use; delete {self.folder} and rerun")
        video = flat.reshape(num, h, w, 3)
        picked = np.minimum(np.asarray(indices, dtype=np.int64), num - 1)  # past the end: the last frame
        return torch.from_numpy(np.asarray(video[picked]))  # fancy indexing copies: the clip owns its memory


def _read_checked(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """meta.json and index.npz of a cache, checked against each other and against frames.u8 (its size
    and mtime as the build recorded them, every sample's bytes inside it); ``CacheDamaged`` names the
    file that is wrong."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        n, nbytes = int(meta["num_samples"]), int(meta["bytes"])
        if not isinstance(meta["errors"], dict) or not isinstance(meta["key"], str):
            raise TypeError("'errors' or 'key' of the wrong type")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CacheDamaged(f"{folder}/meta.json: not a cache's metadata ({err})") from None
    try:
        with np.load(folder / "index.npz", allow_pickle=False) as npz:
            index = {k: np.asarray(npz[k], dtype=np.int64) for k in ("offsets", "counts", "heights", "widths")}
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        raise CacheDamaged(f"{folder}/index.npz: not a cache index ({type(err).__name__})") from None
    sizes = index["counts"] * index["heights"] * index["widths"] * 3
    if any(len(a) != n for a in index.values()) or int(sizes.sum()) != nbytes or (
        n and int((index["offsets"] + sizes).max()) > nbytes) or (index["offsets"] < 0).any():  # fmt: skip
        raise CacheDamaged(f"{folder}/index.npz: does not match meta.json ({n} samples, {nbytes} bytes)")
    try:
        st = (folder / "frames.u8").stat()
    except OSError as err:
        raise CacheDamaged(f"{folder}/frames.u8: {err.strerror}") from None
    if st.st_size != nbytes or st.st_mtime_ns != meta.get("frames_mtime_ns", st.st_mtime_ns):
        what = f"{st.st_size} bytes, the build wrote {nbytes}" if st.st_size != nbytes else "rewritten since the build"
        raise CacheDamaged(f"{folder}/frames.u8: {what}")
    return meta, index


def _write_cache(folder: Path, source: FrameSource, cfg: DataConfig, key: str, progress: bool, name: str) -> None:
    """Decode every sample in ``cfg.num_workers`` processes (at least one: a decoder that crashes costs
    a worker, not the run, even where training reads the finished cache in-process with 0 workers) and
    write frames.u8, index.npz, meta.json."""
    from sevnet.progress import progress_bar

    started = time.perf_counter()
    trace_dir = folder / ".loading"
    trace_dir.mkdir(parents=True)
    samples = source.samples
    jobs = _DecodeJobs(source, cache_short_side(cfg), trace_dir)
    loader = DataLoader(jobs, batch_size=None, num_workers=max(1, cfg.num_workers), collate_fn=_identity)
    n = len(samples)
    offsets, counts, heights, widths = (np.zeros(n, np.int64) for _ in range(4))
    errors: dict[str, str] = {}
    position = 0
    bar = progress_bar(total=n, desc=f"caching {name} frames", unit="video", enabled=progress, leave=False, final=True)
    with open(folder / "frames.u8", "wb") as out, bar:
        try:
            for i, frames, reason in loader:
                if frames is None:
                    errors[str(i)] = reason
                else:
                    counts[i], heights[i], widths[i] = frames.shape[:3]
                    offsets[i] = position
                    out.write(frames.numpy().data)  # contiguous: written without a copy
                    position += frames.numel()
                bar.update(1)
        except RuntimeError as err:  # a decoder that crashed its process (PyAV#2344) kills a worker
            traced = {p.name: p.read_text() for p in trace_dir.glob("worker-*.txt")}
            raise RuntimeError(f"frame cache build failed ({err}); workers were decoding {traced}") from err
    shutil.rmtree(trace_dir)
    np.savez(folder / "index.npz", offsets=offsets, counts=counts, heights=heights, widths=widths)
    meta = {"key": key, "version": CACHE_VERSION, "short_side": cache_short_side(cfg), "num_samples": n,
            "errors": errors, "bytes": position, "build_seconds": time.perf_counter() - started,
            "paths": [str(s.path) for s in samples],
            "frames_mtime_ns": (folder / "frames.u8").stat().st_mtime_ns}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))  # written last: its presence marks a complete cache
    if errors:
        log.warning("frame cache: %d of %d samples could not be decoded (first: %s)", len(errors), n,
                    next(iter(errors.values())))  # fmt: skip


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache (DDP ranks, parallel runs): the others wait, then reuse it."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def open_cache(source: FrameSource, cfg: DataConfig, name: str = "data", progress: bool | None = None) -> FrameCache:
    """The frame cache of ``source`` (a ``VideoDataset``) under ``cfg`` (``cfg.cache``: memory or disk),
    built if needed, in ``cfg.num_workers`` processes with a progress bar (on rank 0).

    ``name`` (the split) and a hash of the dataset's root and format prefix the folder, so that a
    rebuild for changed files or settings removes the stale cache of the same dataset only."""
    progress = _is_main_process() if progress is None else progress
    key = cache_key(source.samples, cfg)
    if cfg.cache == CacheMode.memory:
        with tempfile.TemporaryDirectory(prefix="sevnet-cache-") as tmp:
            _write_cache(Path(tmp), source, cfg, key, progress, name)
            return FrameCache(Path(tmp), in_memory=True)
    if cfg.cache != CacheMode.disk:
        raise ConfigError(f"data.cache must be 'off', 'memory' or 'disk', got {cfg.cache!r}")
    root = default_cache_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    prefix = f"{name}-{hashlib.sha256(f'{cfg.format}|{cfg.root}'.encode()).hexdigest()[:8]}"
    folder = root / f"{prefix}-{key}"
    with _locked(root / f"{prefix}.lock"):
        reused = (folder / "meta.json").is_file()
        if reused:
            try:
                _read_checked(folder)
            except CacheDamaged as err:  # never read: named, removed and built again
                log.warning("frame cache damaged, rebuilding it: %s", err)
                shutil.rmtree(folder, ignore_errors=True)
                reused = False
        if not reused:
            partial = root / f"{folder.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # left by a killed build (we hold the lock)
            _write_cache(partial, source, cfg, key, progress, name)
            for stale in root.glob(f"{prefix}-*"):
                if stale.is_dir() and stale != partial:
                    shutil.rmtree(stale, ignore_errors=True)
            partial.rename(folder)
    cache = FrameCache(folder)
    cache.reused = reused
    log.info("frame cache %s: %s (%.1f MB)", "reused" if reused else "built", folder, cache.nbytes / 1e6)
    return cache

"""DataLoader settings that keep a training step fed, and the skip-and-count collate."""

from __future__ import annotations

import functools
import math
import os
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from sevnet.errors import ConfigError, SevnetError

from .config import DataConfig
from .transforms import stack_clips


class SkippedSamplesError(SevnetError, RuntimeError):
    """Too many samples failed to load; the message names them."""


class EpochSampler(Sampler):
    """Yields ``(index, draw)`` keys: shuffled per (seed, epoch) in training, in order otherwise.

    ``epoch_size`` (training): an epoch of that many keys instead of one pass, made of whole shuffled
    passes with the last one cut, so every sample is drawn as often as any other (to one). A pass
    has its own ``draw`` number (the epoch's when an epoch is one pass), which seeds augmentation:
    a sample drawn twice in an epoch is augmented twice, differently. What it is for: a small
    dataset's epoch of a few steps makes the per-epoch work (checkpoint, evaluation) outweigh
    training; a fixed-size epoch keeps that cadence the same whatever the dataset's size.

    Distributed: each of ``world_size`` ranks takes every world_size-th key. Training pads the
    permutation so every rank runs the same number of steps (as DistributedSampler does);
    evaluation never pads, so each sample is evaluated exactly once across ranks.
    """

    def __init__(
        self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool = False,
        epoch_size: int = 0,
    ) -> None:  # fmt: skip
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch_size = epoch_size if size else 0
        self.epoch = 0
        self.start = 0  # keys of this rank to skip in the current epoch (mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _passes(self) -> int:
        return math.ceil(self.epoch_size / self.size) if self.epoch_size else 1

    def _keys(self) -> list[tuple[int, int]]:
        passes = self._passes()
        keys: list[tuple[int, int]] = []
        for p in range(passes):
            draw = self.epoch * passes + p
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed * 100_003 + draw)
                order = torch.randperm(self.size, generator=g).tolist()
            else:
                order = list(range(self.size))
            keys += [(i, draw) for i in order]
        if self.epoch_size:
            keys = keys[: self.epoch_size]
        if self.pad and self.world_size > 1 and keys:
            total = math.ceil(len(keys) / self.world_size) * self.world_size
            keys += keys[: total - len(keys)]
        return keys[self.rank :: self.world_size][self.start :]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


def collate_skipping(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack good items; failed ones go to ``"skipped"`` as (path, reason). An all-failed batch
    has ``clip`` and ``target`` None (the training loop skips it)."""
    good = [it for it in items if "error" not in it]
    skipped = [it["error"] for it in items if "error" in it]
    partial = [it["partial"] for it in good if "partial" in it]  # used, but cut off: (path, reason)
    if not good:
        return {"clip": None, "target": None, "index": torch.empty(0, dtype=torch.long), "skipped": skipped,
                "partial": partial}  # fmt: skip
    batch = default_collate([{k: v for k, v in it.items() if k not in ("partial", "clip")} for it in good])
    batch["clip"] = stack_clips([it["clip"] for it in good], shared=get_worker_info() is not None)
    batch["skipped"], batch["partial"] = skipped, partial
    return batch


def collate_repeats(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``collate_skipping`` for items of ``data.repeats`` clips each: the clips of a video lie side by
    side in one flat batch, each with its target and its video's index."""
    batch = collate_skipping(items)
    if batch["clip"] is not None:
        k = batch["clip"].shape[1]
        batch["videos"] = len(batch["clip"])  # what SkipCounter weighs the skipped videos against
        batch["clip"], batch["target"] = batch["clip"].flatten(0, 1), batch["target"].flatten(0, 1)
        batch["index"] = batch["index"].repeat_interleave(k)
    return batch


def videos_per_batch(batch_size: int, repeats: int) -> int:
    """Videos a loader reads for a batch of ``batch_size`` clips when each gives ``repeats`` clips."""
    if repeats < 1 or batch_size % repeats:
        raise ConfigError(
            f"train.batch_size ({batch_size}) must be a multiple of data.repeats ({repeats}): a step trains on "
            f"batch_size clips, {repeats} from each video"
        )
    return batch_size // repeats


def build_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    cfg_data: DataConfig,
    distributed: bool = False,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    epoch_size: int = 0,
) -> DataLoader:
    """Workers decode in parallel; pinned memory when batches go to a GPU (``pin_memory``; None = when
    PyTorch sees one), so that the copy can overlap compute (non_blocking); workers persist across epochs.
    Call ``loader.sampler.set_epoch(epoch)`` each epoch (it reshuffles and reseeds augmentation).
    ``batch_size`` and ``epoch_size`` (clips per training epoch, 0 = one pass; see ``EpochSampler``) count
    clips: a dataset whose items hold ``repeats`` clips (``data.repeats``) is read ``batch_size / repeats``
    videos at a time (``loader.batch_size``; the sampler counts videos)."""
    cfg = cfg_data
    rank, world = 0, 1
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    repeats = getattr(dataset, "repeats", 1)
    if train and getattr(getattr(dataset, "cfg", None), "repeats", None) == "auto" and batch_size % repeats:
        dataset.repeats = repeats = math.gcd(repeats, batch_size)  # data.repeats: auto fits the batch
    batch_size = videos_per_batch(batch_size, repeats)
    videos = -(-epoch_size // repeats) if train else 0
    sampler = EpochSampler(len(dataset), shuffle=train, seed=cfg.seed, rank=rank, world_size=world, pad=train,
                           epoch_size=videos)  # fmt: skip
    workers = cfg.num_workers if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_repeats if repeats > 1 else collate_skipping,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=train and len(sampler) >= batch_size,
        # Its own generator: creating an iterator then never draws from the global RNG, which
        # would shift dropout masks after a resume (augmentation is seeded per sample anyway).
        generator=torch.Generator().manual_seed(cfg.seed),
        worker_init_fn=functools.partial(_init_worker, cfg.worker_nice) if workers else None,
    )


def _init_worker(niceness: int, worker_id: int) -> None:
    """Raise a loader worker's niceness (data.worker_nice): on a CPU that trains with every core, a
    worker at the same priority preempts a training thread and the others wait for it at their next
    sync; at a lower one it runs in their idle gaps (frame cache, 1 worker: 0.82x -> 0.86x of in-memory).

    Signals: Ctrl-C (SIGINT) and a scheduler's SIGTERM reach the whole process group; the training
    process then finishes its step and saves (engine.rundir.StopSignals), which needs its workers
    alive. So a worker ignores SIGINT and its first SIGTERM (a second one, e.g. the loader's own
    shutdown of a stuck worker, ends it as usual)."""
    if niceness:
        os.nice(niceness)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _ignore_first_sigterm)


def _ignore_first_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class SkipCounter:
    """Counts samples the collate skipped; stops once their share passes ``max_fraction``.

    Given ``num_videos`` (the training set's size), the share is of distinct files: a bad file drawn
    again (another epoch, ``data.repeats``, ``train.epoch_clips``) counts once, and nothing depends on
    which videos came first (1 bad video of 24 is 4.2% from its first draw to the end). Without it, the
    share is of samples drawn so far, judged after ``min_seen``. Under DDP pass the counts summed over
    ranks to ``add``, and every rank's newly failed files to ``bad_files``, so that every rank stops
    together.
    """

    def __init__(self, max_fraction: float, min_seen: int = 20, num_videos: int | None = None) -> None:
        self.max_fraction, self.min_seen, self.num_videos = max_fraction, min_seen, num_videos
        self.seen = 0  # samples attempted (loaded + skipped)
        self.num_skipped = 0
        self.bad_files: set[str] = set()  # every file that failed, on any rank
        self.skipped: list[tuple[str, str]] = []  # (path, reason) seen by this process
        self.partial: list[tuple[str, str]] = []  # (path, reason): used, but only partly decodable

    def add(self, loaded: int, skipped: list[tuple[str, str]], total_loaded: int | None = None,
            total_skipped: int | None = None, partial: list[tuple[str, str]] | None = None) -> None:  # fmt: skip
        self.skipped += skipped
        self.partial += partial or []
        self.bad_files.update(path for path, _ in skipped)
        self.num_skipped += len(skipped) if total_skipped is None else total_skipped
        self.seen += (loaded if total_loaded is None else total_loaded) + (
            len(skipped) if total_skipped is None else total_skipped
        )
        self.check()

    def state(self, named_per_rank: list[tuple[list, list]]) -> dict[str, Any]:
        """What a checkpoint keeps (JSON): the counts and every rank's (skipped, partial) lists, so that a
        resumed run's skipped.csv and summary.json cover the whole run, not only its last session."""
        return {"seen": self.seen, "num_skipped": self.num_skipped, "bad_files": sorted(self.bad_files),
                "named": [[list(map(list, s)), list(map(list, p))] for s, p in named_per_rank]}  # fmt: skip

    def load_state(self, state: dict[str, Any] | None, rank: int, world_size: int) -> None:
        """Restore ``state``'s counts, and this rank's lists (with another world size: all on rank 0)."""
        if not isinstance(state, dict):
            return  # a checkpoint from before the counts were kept
        self.seen, self.num_skipped = int(state["seen"]), int(state["num_skipped"])
        self.bad_files = set(state.get("bad_files", []))
        named = state["named"]
        mine = named[rank : rank + 1] if len(named) == world_size else (named if rank == 0 else [])
        self.skipped = [tuple(x) for s, _ in mine for x in s]
        self.partial = [tuple(x) for _, p in mine for x in p]

    def update(self, batch: dict[str, Any]) -> None:
        """Count one collated batch of this process."""
        loaded = 0 if batch["clip"] is None else batch.get("videos", len(batch["clip"]))  # data.repeats: videos
        self.add(loaded, batch["skipped"], partial=batch.get("partial"))

    def check(self) -> None:
        if self.num_videos:
            bad, share = len(self.bad_files), len(self.bad_files) / self.num_videos
            what = f"{bad} of the {self.num_videos} training videos could not be loaded"
        else:
            share = self.num_skipped / max(self.seen, 1)
            what = f"{self.num_skipped} of {self.seen} samples could not be loaded"
            if self.seen < self.min_seen:
                return
        if share > self.max_fraction:
            raise SkippedSamplesError(
                f"{what} ({share:.1%} > data.max_skip_fraction={self.max_fraction:.1%}):\n{self.summary()}\n"
                "sevnet data check DIR lists every such file and writes an exclude list: train with "
                "data.exclude_list=FILE to leave them out (or raise data.max_skip_fraction)"
            )

    def summary(self, limit: int = 20) -> str:
        """Each failed file once, with its reason (which usually names the file already)."""
        first: dict[str, str] = {}
        for path, reason in self.skipped:
            first.setdefault(path, reason)
        lines = [
            f"  {reason}" if path in reason else f"  {path}: {reason}" for path, reason in list(first.items())[:limit]
        ]
        if len(first) > limit:
            lines.append(f"  ... and {len(first) - limit} more")
        return "\n".join(lines)

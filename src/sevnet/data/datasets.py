"""One dataset class for every on-disk format: annotation parser + decoder + sampler + transform.

Items are dicts ``{"clip", "target", "index"}``. A sample that cannot be decoded yields
``{"error": (path, reason), "index"}`` instead of raising, so a bad file never kills a worker;
the loader's collate drops it and reports it in the batch's ``"skipped"`` list.
Keys are ``(index, epoch)`` pairs (see ``loader.EpochSampler``) so that augmentation is seeded by
(seed, epoch, index): the same whatever the worker count, process count or resume point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .annotations import Annotation, Sample, parse_annotation
from .cache import FrameCache, open_cache
from .config import CacheMode, DataConfig, Flip, Reverse, Sampling
from .mirror import has_names, mirror_labels
from .registry import format_spec
from .reversal import reversal_labels
from .sampling import dense_indices, segment_indices
from .transforms import build_transform, flip_height, flip_width, stack_clips
from .video import DecodeError, count_frame_files, probe_video, read_frame_folder, read_frames

log = logging.getLogger(__name__)


class VideoDataset(Dataset):
    """Clips from videos or frame folders listed by an ``Annotation``."""

    def __init__(self, annotation: Annotation, cfg: DataConfig, train: bool) -> None:
        self.samples: list[Sample] = annotation.samples
        self.classes: list[str] = annotation.classes
        self.multi_label: bool = annotation.multi_label
        self.missing: list[str] = annotation.missing
        self.cfg = cfg
        self.train = train
        self.transform = build_transform(train, cfg)  # uint8 frames -> normalised float clip(s)
        # When True (the Trainer sets it for its training set), items' clips stay uint8 and the consumer
        # normalises whole batches with ``normalize_clips`` (on its device): a quarter of the bytes
        # through the loader's shared memory and no float work in its workers. Direct users of the
        # dataset (evaluation, predict, tests) leave it False and get normalised float clips.
        self.uint8_clips = False
        self._uint8_transform = build_transform(train, cfg, normalize=False)
        # When set, each loader worker writes the path it is decoding to <trace_dir>/worker-<id>.txt,
        # so that a worker killed by a crashing decoder can be reported with the file it was reading.
        self.trace_dir: Path | None = None
        # Decoded-frame cache (data.cache: memory | disk, set by build_dataset): frame counts and frames
        # come from it instead of the files; sampling, seeding and transforms are unchanged.
        self.cache: FrameCache | None = None
        self._counted: dict[Path, tuple[int, str | None]] = {}  # count_frames: (frames, why partial) per path
        # data.flip: auto in training: each class's mirror-image class (sevnet.data.mirror), or None = no flip.
        self.mirror: list[int | None] | None = None
        if train and cfg.flip == Flip.auto and has_names(self.classes):
            self.mirror = mirror_labels(self.classes)
        # data.vflip in training: each class's upside-down class (on: itself), or None = no vertical flip.
        self.vertical_mirror: list[int | None] | None = None
        if train and cfg.vflip == Flip.on:
            self.vertical_mirror = list(range(len(self.classes)))
        elif train and cfg.vflip == Flip.auto and has_names(self.classes):
            self.vertical_mirror = mirror_labels(self.classes, axis="height")
        # data.reverse: auto in training: each class's time-reversed partner (sevnet.data.reversal), or None.
        self.reversal: list[int | None] | None = None
        if train and cfg.reverse == Reverse.auto and has_names(self.classes):
            self.reversal = reversal_labels(self.classes)
        # Clips per training item (data.repeats; the loader collates them flat); 1 in evaluation. For "auto",
        # build_loader lowers it to fit a batch size that is not a multiple of it.
        self.repeats = int(cfg.repeats) if cfg.repeats != "auto" else auto_repeats(len(self.samples), len(self.classes))
        if not train:
            self.repeats = 1
        if self.missing:
            log.warning("%d listed videos are missing on disk (first: %s)", len(self.missing), self.missing[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def target_tensor(self, target: int | list[int]) -> torch.Tensor:
        if self.multi_label:
            vec = torch.zeros(self.num_classes)
            vec[list(target) if isinstance(target, list) else [target]] = 1.0
            return vec
        return torch.tensor(target, dtype=torch.long)

    def clip_indices(self, num_frames: int, rng: np.random.Generator) -> list[list[int]]:
        """One index list per temporal view (1 in training, eval_clips in evaluation)."""
        cfg = self.cfg
        views = 1 if self.train else cfg.eval_clips
        if cfg.sampling == Sampling.segment:
            return [segment_indices(num_frames, cfg.num_frames, self.train, rng, k, views) for k in range(views)]
        return [
            dense_indices(num_frames, cfg.num_frames, cfg.frame_stride, self.train, rng, k, views) for k in range(views)
        ]

    def count_frames(self, sample: Sample, problems: list[str] | None = None) -> int:
        """The frame count sampling uses (video containers misreport it: ``probe_video`` demuxes).
        A video over ``data.max_pixels`` raises; a cut-off one adds why to ``problems``."""
        known = self._counted.get(sample.path)
        if known is None:  # probed once per worker: a loader's workers persist, so later epochs skip the demux
            if sample.frames:
                known = (sample.num_frames or count_frame_files(sample.path), None)
            else:
                info = probe_video(sample.path, self.cfg.max_pixels)
                known = (info.num_frames, info.partial)
            self._counted[sample.path] = known
        if known[1] and problems is not None:
            problems.append(known[1])
        return known[0]

    def load_frames(self, sample: Sample, indices: list[int], index: int | None = None) -> torch.Tensor:
        """uint8 (T, H, W, 3) frames ``indices`` of ``sample`` (number ``index``, from the cache when there is one).
        A damaged tail is noted in the problem list of the item being built (``__getitem__``)."""
        if self.cache is not None and index is not None:
            return self.cache.frames(index, indices)
        if sample.frames:
            return read_frame_folder(sample.path, indices, self.cfg.frame_template, max_pixels=self.cfg.max_pixels)
        return read_frames(sample.path, indices, self.cfg.max_pixels, getattr(self, "_problems", None))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.samples[index]
        rng = np.random.default_rng([self.cfg.seed, epoch, index])
        if self.trace_dir is not None:
            self._trace(sample)
        self._problems = problems = []  # why a sample that still gives a clip is partial (a cut-off tail)
        try:
            # From the cache, a sample that failed to decode when it was built raises that error again.
            num = self.cache.num_frames(index) if self.cache is not None else self.count_frames(sample, problems)
            views = self.clip_indices(num, rng) if self.repeats == 1 else []
            target = sample.target
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only (what the transforms draw from, and what fork_rng restores):
                # torch.manual_seed would also queue a CUDA reseed with a captured stack, costing
                # ~0.2-0.5 ms per clip, and reseed the GPU's RNG in the main process (0 workers).
                torch.default_generator.manual_seed(int(rng.integers(2**62)))
                if views and self.reversal is not None:  # after the transforms' seed: the same crop either way
                    views[0], target = self._maybe_reverse(views[0], target, rng)
                transform = self._uint8_transform if self.uint8_clips else self.transform
                if self.repeats > 1:
                    clips, targets = self._repeated_clips(sample, index, num, rng, transform)
                else:
                    clips = [transform(self.load_frames(sample, idx, index)) for idx in views]
        except (DecodeError, OSError, RuntimeError, ValueError) as err:
            reason = str(err)
            return {"error": (str(sample.path), reason), "index": index}
        if self.repeats > 1:
            item = self._repeated_item(clips, targets, index, rng)
        else:
            clip = clips[0] if self.train else torch.cat(clips)  # eval: (clips*crops, 3, T, H, W)
            clip, target = self._orient(clip, target, rng)
            item = {"clip": clip, "target": self.target_tensor(target), "index": index}
        if problems:  # used, and named: the run's skipped.csv lists it as partial
            item["partial"] = (str(sample.path), "; ".join(dict.fromkeys(problems)))
        return item

    def _repeated_clips(
        self, sample: Sample, index: int, num: int, rng: np.random.Generator, transform: Any
    ) -> tuple[list[torch.Tensor], list[int | list[int]]]:
        """``repeats`` clips, each with its own frame indices and augmentation (and data.reverse draw), from
        one decode of the union of their frames (one pass through the file); and their targets."""
        views = [self.clip_indices(num, rng)[0] for _ in range(self.repeats)]
        targets = [sample.target] * len(views)
        if self.reversal is not None:
            drawn = [self._maybe_reverse(view, sample.target, rng) for view in views]
            views, targets = [view for view, _ in drawn], [t for _, t in drawn]
        wanted = sorted({i for view in views for i in view})
        frames = self.load_frames(sample, wanted, index)
        at = {frame: n for n, frame in enumerate(wanted)}
        # the transform selects each view's frames after its crop (an index tensor, not frames[list]: list
        # indexing of a uint8 tensor took 1.3 ms a clip, 5x as long)
        clips = [transform(frames, torch.tensor([at[i] for i in view])) for view in views]
        return clips, targets

    def _repeated_item(
        self, clips: list[torch.Tensor], targets: list[int | list[int]], index: int, rng: np.random.Generator
    ) -> dict[str, Any]:
        """(repeats, 3, T, H, W) clips with (repeats, ...) targets; data.flip auto and data.vflip draw for each clip."""
        pairs = [self._orient(c, t, rng) for c, t in zip(clips, targets)]
        targets = torch.stack([self.target_tensor(t) for _, t in pairs])
        return {"clip": stack_clips([c for c, _ in pairs]), "target": targets, "index": index}

    def _maybe_reverse(
        self, view: list[int], target: int | list[int], rng: np.random.Generator
    ) -> tuple[list[int], int | list[int]]:
        """data.reverse: auto: with probability 1/2, the view's frames in reverse order and the label(s) of
        the time-reversed partner class; a label without a partner (None) keeps the view as it is."""
        assert self.reversal is not None
        labels = target if isinstance(target, list) else [target]
        partners = [self.reversal[t] for t in labels]
        if rng.random() >= 0.5 or any(p is None for p in partners):
            return view, target
        return list(view)[::-1], (partners if isinstance(target, list) else partners[0])  # type: ignore[return-value]

    def _orient(
        self, clip: torch.Tensor, target: int | list[int], rng: np.random.Generator
    ) -> tuple[torch.Tensor, int | list[int]]:
        """data.flip: auto, then data.vflip: each a draw of its own, where it is on."""
        if self.mirror is not None:
            clip, target = _maybe_mirror(clip, target, rng, self.mirror, flip_width)
        if self.vertical_mirror is not None:
            clip, target = _maybe_mirror(clip, target, rng, self.vertical_mirror, flip_height)
        return clip, target

    def _trace(self, sample: Sample) -> None:
        worker = get_worker_info()
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        (self.trace_dir / f"worker-{worker.id if worker else 0}.txt").write_text(str(sample.path))


def _maybe_mirror(
    clip: torch.Tensor, target: int | list[int], rng: np.random.Generator, mirror: list[int | None],
    flip: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, int | list[int]]:  # fmt: skip
    """With probability 1/2, ``flip(clip)`` and its label(s) mapped through ``mirror``; a label with no
    mirror class (None) keeps the clip as it is."""
    labels = target if isinstance(target, list) else [target]
    mirrored = [mirror[t] for t in labels]
    if rng.random() >= 0.5 or any(m is None for m in mirrored):
        return clip, target
    return flip(clip), (mirrored if isinstance(target, list) else mirrored[0])  # type: ignore[return-value]


AUTO_REPEATS, AUTO_REPEATS_MAX_VIDEOS_PER_CLASS = 4, 10


def auto_repeats(videos: int, classes: int) -> int:
    """``data.repeats: auto``: 4 clips per decoded video with up to 10 training videos per class, else 1.
    Measured at equal steps from the motion prior on two datasets (docs/training.md): with 5 videos per class
    4 repeats gained 6-7 points on one and none on the other; none with 15; with 60 they lost 1 and 9-10
    points (fewer distinct videos a step)."""
    few = videos <= AUTO_REPEATS_MAX_VIDEOS_PER_CLASS * max(classes, 1)
    return AUTO_REPEATS if few else 1


def build_dataset(cfg: DataConfig, split: str, train: bool, progress: bool | None = None) -> Dataset:
    """The dataset of ``split`` (train / val / test) for the format named in ``cfg`` (``progress``:
    the frame cache's build bar; None = on rank 0)."""
    spec = format_spec(cfg.format)
    if spec.dataset is not None:  # a format with no files (synthetic)
        return spec.dataset(cfg, split, train)
    dataset = VideoDataset(parse_annotation(cfg, split), cfg, train)
    if cfg.cache != CacheMode.off:
        dataset.cache = open_cache(dataset, cfg, name=split, progress=progress)
    return dataset

"""Does the decoded-frame cache (data.cache) train from video files at in-memory speed?

Training clips/s of the model, clip size and loader workers of a config (default: the own-videos
config, folder_sevnet_xs; batch 16, AdamW) in one run, with one training-step function
for every row:
  (a) clips held in memory as one tensor (the reference: no loader at all),
  (b) from the video files (decoding every epoch in the loader workers),
  (c) from the frame cache, after it is built (its build time is reported separately),
on a 720-clip class-folder dataset of 24-frame webm videos (12 classes): ``tools/photo_motion.py``
when scikit-image is installed, else moving-pattern videos written here. The target is (c)/(a) >= 0.9.
The cache rows run with the config's loader workers and with 0 (the loader in the training process).
Loader batches are what the Trainer gets: uint8 clips, normalised per batch in the training process.
Beside clips/s, the loader's CPU ms per clip (one thread: read, transform, collate, and its share of
the batch normalisation): what a clip costs beside the training step, on the same cores, whatever
else the machine runs; and the bytes of a batch's clips, what crosses from a worker to the trainer.

    python benchmarks/cache_bench.py [--config CFG] [--root DIR] [--steps 30] [--warmup 3] [--rounds 3]
                                     [--cache disk,memory] [--workers W,0]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sevnet.data import DataConfig, build_dataset, build_loader, collate_skipping, normalize_clips
from sevnet.data.formats import FORMATS
from sevnet.engine.config import load_config
from sevnet.engine.trainer import amp_dtype, use_channels_last
from sevnet.models import create_model

CLASSES, PER_CLASS, FRAMES, SIZE, BATCH = 12, 60, 24, (128, 128), 16
DATA_KEYS = ("num_frames", "sampling", "train_scale", "train_crop", "eval_scale", "eval_crop", "num_workers")
# What a config sets for this benchmark: the data keys above, the model and its overrides (filled by main).
SETUP: dict = {"data": {}, "model": {}, "channels_last": False, "amp": None}


def write_pattern_videos(root: Path) -> None:
    """Fallback data: per class a stripe pattern moving in its own direction and speed, VP9 webm."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    for c, k in itertools.product(range(CLASSES), range(PER_CLASS)):
        path = root / "train" / f"class_{c:02d}" / f"{k:05d}.webm"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        angle, colour = 2 * np.pi * c / CLASSES, rng.integers(40, 255, 3)
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libvpx-vp9", rate=12)
            stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
            stream.options = {"crf": "30", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
            stream.codec_context.time_base = Fraction(1, 12)
            for t in range(FRAMES):
                phase = (xx * np.cos(angle) + yy * np.sin(angle) + 2 * t) / 6.0
                frame = (0.5 + 0.5 * np.sin(phase))[..., None] * colour
                video_frame = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
                video_frame.pts = t
                out.mux(stream.encode(video_frame))
            out.mux(stream.encode())


def make_dataset(root: Path, videos: str) -> DataConfig:
    """The dataset (written once; reused when ``root`` already holds it) and its data config."""
    try:
        if videos == "pattern":
            raise ImportError
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        from photo_motion import write_folder_dataset

        write_folder_dataset(root, "objects", train_per_class=PER_CLASS, val_per_class=2, num_frames=FRAMES,
                             size=SIZE, seed=0)  # fmt: skip
    except ImportError:
        write_pattern_videos(root)
    if "folder" in FORMATS:
        return DataConfig(format="folder", root=str(root), **SETUP["data"])
    videos = sorted((root / "train").glob("*/*.webm"))  # before format "folder": an explicit list
    classes = sorted({v.parent.name for v in videos})
    lines = [f"{v.relative_to(root)} {classes.index(v.parent.name)}\n" for v in videos]
    (root / "train_list.txt").write_text("".join(lines))
    return DataConfig(format="video_list", root=str(root), num_classes=len(classes), **SETUP["data"])


def train_rate(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], warmup: int, steps: int) -> float:
    """Clips/s of one training step (forward, cross-entropy, backward, AdamW), batches included,
    after ``warmup`` untimed steps (worker start-up, first allocations)."""
    torch.manual_seed(0)
    model = create_model(num_classes=CLASSES, **SETUP["model"])
    if SETUP["channels_last"]:  # as the Trainer does with train.channels_last: on
        model = model.to(memory_format=torch.channels_last_3d)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    clips = 0
    for n in range(warmup + steps):
        if n == warmup:
            start, clips = time.perf_counter(), 0
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=SETUP["amp"] or torch.float32, enabled=SETUP["amp"] is not None):
            loss = nn.functional.cross_entropy(model(x), y)  # as the Trainer does with train.amp
        loss.backward()
        opt.step()
        clips += len(x)
    return clips / (time.perf_counter() - start)


def loader_batches(dataset: Dataset, cfg: DataConfig, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches from the loader, epoch after epoch (skipped samples would be dropped), as the
    Trainer gets them: uint8 clips, normalised here, in the training process (Trainer.train_step)."""
    dataset.uint8_clips = True
    loader = build_loader(dataset, BATCH, train=True, cfg_data=cfg, num_workers=workers)
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            if batch["clip"] is not None:
                clip = batch["clip"]
                if SETUP["channels_last"]:  # as Trainer.train_step: the layout change moves uint8
                    clip = clip.contiguous(memory_format=torch.channels_last_3d)
                yield normalize_clips(clip, cfg.mean, cfg.std), batch["target"]


def tensor_batches(clips: torch.Tensor, targets: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The reference: real training clips decoded beforehand and held as one tensor."""
    for start in itertools.cycle(range(0, len(clips), BATCH)):
        yield clips[start : start + BATCH], targets[start : start + BATCH]


def held_clips(cfg: DataConfig, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = build_dataset(cfg, "train", train=True)
    items = [dataset[(i, 0)] for i in range(count)]
    clips = torch.stack([it["clip"] for it in items])
    if SETUP["channels_last"]:
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    return clips, torch.stack([it["target"] for it in items])


def loader_cpu_ms(dataset: Dataset, cfg: DataConfig, batches: int = 6, rounds: int = 5) -> tuple[float, int]:
    """CPU ms that one training clip costs the loader (read, transform, collate, batch normalisation),
    median of ``rounds``, on one thread as in a loader worker; and the bytes of a batch's clips. Unlike
    wall time, hardly changed by what else a shared machine runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dataset.uint8_clips = True  # as in the Trainer's loader
    dataset[(0, 0)]
    times = []
    for r in range(rounds):
        start = time.process_time()
        for b in range(batches):
            batch = collate_skipping([dataset[(b * BATCH + i, r + 1)] for i in range(BATCH)])
            normalize_clips(batch["clip"], cfg.mean, cfg.std)
        times.append((time.process_time() - start) * 1000 / (batches * BATCH))
    torch.set_num_threads(threads)
    return statistics.median(times), batch["clip"].nbytes


def measure(sources: dict[str, Callable[[], Iterator]], warmup: int, steps: int, rounds: int) -> dict[str, float]:
    """Median clips/s of each source over ``rounds`` interleaved rounds (a shared machine's load
    drifts: interleaving spreads it over all rows). Each round starts a fresh loader and shuts it
    down after, so that no idle row's workers decode in the background of another row's timing."""
    rates: dict[str, list[float]] = {name: [] for name in sources}
    for r in range(rounds):
        for name, make in sources.items():
            batches = make()
            rates[name].append(train_rate(batches, warmup, steps))
            batches.close()  # the generator's loader shuts its workers down
            gc.collect()  # and nothing of this row lingers into the next one's timing
            print(f"  round {r + 1}/{rounds} {name}: {rates[name][-1]:.1f} clips/s", flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("folder_sevnet_xs"),
                        help="the model, clip size and loader workers to measure")  # fmt: skip
    parser.add_argument("--root", type=Path, help="dataset folder (written there if absent); default: a temp dir")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per row and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the table gives medians")
    parser.add_argument("--cache", default="disk,memory", help="cache modes to measure, comma-separated")
    parser.add_argument("--workers", help="loader workers of the cache rows, comma-separated; default: the config's,0")
    parser.add_argument("--videos", choices=["auto", "pattern"], default="auto",
                        help="auto: tools/photo_motion.py (needs scikit-image); pattern: stripes")  # fmt: skip
    args = parser.parse_args()
    exp = load_config(args.config, ["data.root=unused"])
    SETUP["data"] = {key: getattr(exp.data, key) for key in DATA_KEYS}
    SETUP["model"] = {"name": exp.model.name, "dropout": exp.model.dropout, **exp.model.overrides}
    SETUP["channels_last"] = use_channels_last(exp.train.channels_last, torch.device("cpu"))
    SETUP["amp"] = amp_dtype(exp.train.amp, torch.device("cpu"))  # auto: bf16 on a CPU with AMX
    workers = [int(w) for w in (args.workers or f"{exp.data.num_workers},0").split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp) / "data"
        t0 = time.perf_counter()
        cfg = make_dataset(root, args.videos)
        print(f"dataset: {root} (format {cfg.format}), ready in {time.perf_counter() - t0:.0f} s")
        sources, notes, loader = build_sources(cfg, Path(tmp) / "cache", args.cache.split(","), workers)
        rates = measure(sources, args.warmup, args.steps, args.rounds)
    ref = rates["(a) clips in memory (tensor)"]
    print(f"\n{'source':<40}{'train clips/s':>14}{'vs (a)':>8}{'loader CPU ms/clip':>20}{'batch MB':>10}  note")
    for name, rate in rates.items():
        cpu, size = (f"{loader[name][0]:.2f}", f"{loader[name][1] / 1e6:.1f}") if name in loader else ("-", "-")
        print(f"{name:<40}{rate:>14.1f}{rate / ref:>7.2f}x{cpu:>20}{size:>10}  {notes.get(name, '')}")
    d = SETUP["data"]
    print(
        f"\n{args.config.name}: {SETUP['model']}, {d['num_frames']}x{d['train_crop']}x{d['train_crop']} clips, "
        f"batch {BATCH}, AdamW, autocast {SETUP['amp']}, {d['num_workers']} loader worker(s) unless a row says, "
        f"{args.warmup} warm-up + {args.steps} timed steps per row, median of {args.rounds} interleaved rounds, "
        f"{torch.get_num_threads()} threads; {CLASSES * PER_CLASS} clips of {FRAMES} frames at {SIZE[0]}x{SIZE[1]}."
    )


def build_sources(
    cfg: DataConfig, cache_dir: Path, modes: list[str], workers: list[int]
) -> tuple[dict[str, Callable[[], Iterator]], dict[str, str], dict[str, tuple[float, int]]]:
    """The rows (batch iterators), notes (cache build time and size) and loader (CPU ms/clip, batch bytes)."""
    clips, targets = held_clips(cfg, 8 * BATCH)
    files = build_dataset(cfg, "train", train=True)
    sources = {"(a) clips in memory (tensor)": lambda: tensor_batches(clips, targets),
               "(b) video files, no cache": lambda: loader_batches(files, cfg, cfg.num_workers)}  # fmt: skip
    notes, loader = {}, {"(b) video files, no cache": loader_cpu_ms(files, cfg)}
    for mode in modes:
        cached = DataConfig(**{**cfg.__dict__, "cache": mode, "cache_dir": str(cache_dir)})
        t0 = time.perf_counter()
        dataset = build_dataset(cached, "train", train=True)  # decodes every frame once, in the config's workers
        built = f"built in {time.perf_counter() - t0:.1f} s, {dataset.cache.nbytes / 1e6:.0f} MB"
        stats = loader_cpu_ms(dataset, cached)
        for w in workers:
            name = f"(c) frame cache: {mode}, {w} worker{'s' if w != 1 else ''}"
            notes[name], loader[name] = built, stats
            sources[name] = lambda dataset=dataset, cached=cached, w=w: loader_batches(dataset, cached, w)
    return sources, notes, loader


if __name__ == "__main__":
    main()

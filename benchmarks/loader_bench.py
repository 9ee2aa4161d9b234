"""Does the data loader keep a SEVNet-S training step fed, and how much does ``sevnet data prepare``
(and ``data.repeats``) buy? Clips/s of the loader alone at a typical training setting (16x160x160,
uint8 batches as the Trainer gets them, 2 workers) for each on-disk layout, raw and prepared with
each candidate codec, next to the clips/s that SEVNet-S's training step consumes, in one run.

Writes small real datasets first (240 px high, 3 s at 12 fps, like SSv2; the frames are a textured
scene panning past the camera with a moving object and sensor noise, so codecs see real-looking
bitrates): webm/VP9 (SSv2 layout), mp4/H.264 (Kinetics layout), JPEG frame folders (SSv1 layout).
Then ``prepare_dataset`` copies of the SSv2 set with each codec in ``sevnet.data.prepare.CODECS``
(short side ``--short-side``) and of the SSv1 set (JPEG frames). Batches stay uint8, as the Trainer's
loader ships them: normalising is the consumer's work, on its device (the previous version of this
benchmark normalised in the main process, and that alone capped it near 67 clips/s on 2 cores: the
last row measures that ceiling). The variants are measured in
interleaved rounds (the machine is shared: the ratios to raw webm, taken within each round, are the
figures to read); the table gives medians over rounds.

    python benchmarks/loader_bench.py [--videos 48] [--workers 2] [--rounds 3] [--short-side 182]

The default short side is the config's smallest training scale (its eval_scale): data prepared as
MMAction2 and PySlowFast prepare Kinetics (short side 256 for a [256, 320] scale jitter).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sevnet.data import DataConfig, build_dataset, build_loader, normalize_clips
from sevnet.data.prepare import CODECS, DEFAULT_CODEC, prepare_dataset
from sevnet.models import create_model
from sevnet.timing import train_steps_per_second

COMMON = {"num_frames": 16, "train_scale": [182, 228], "train_crop": 160}
FRAMES, SIZE = 36, (240, 320)
CLASSES = ["Pushing something", "Pulling something"]
FIXED = "no decoding (one fixed uint8 clip): the loader's ceiling"
NORMALISED = "no decoding, batches normalised on the CPU (the old measurement's ceiling)"
RELEASED = {
    ".webm": ("libvpx-vp9", {"crf": "30", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}),
    ".mp4": ("libx264", {"crf": "23"}),
}


def scene(seed: int, num_frames: int = FRAMES, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """A textured scene panning 3 px a frame, a bright object crossing it, and a little sensor noise:
    a hand-held clip's bitrate, not the flat bar code of the tests (which any codec squeezes to nothing)."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.integers(0, 256, (h // 8, (w + 3 * num_frames) // 8 + 1, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((coarse.shape[1] * 8, h), Image.Resampling.BICUBIC))
    frames = []
    for t in range(num_frames):
        frame = texture[:, 3 * t : 3 * t + w].astype(np.float32)
        x, y = 20 + 6 * t, h // 3 + int(20 * np.sin(t / 5))
        frame[y : y + 50, x : x + 70] = (230, 200, 60)
        frame += rng.normal(0, 1.5, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 12) -> None:
    """As released: VP9 at about 150 kb/s for .webm (SSv2's rate), H.264 crf 23 for .mp4 (YouTube's)."""
    codec, options = RELEASED[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        stream.options = dict(options)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


K400_LABELS = ["abseiling", "juggling balls"]


def write_scene(root: Path, i: int) -> None:
    """Scene ``i`` in each raw layout: SSv2 webm, Kinetics mp4, SSv1 JPEG frames."""
    frames = scene(i)
    write_clip(root / "ssv2" / "20bn-something-something-v2" / f"{i}.webm", frames)
    write_clip(root / "k400" / "train" / K400_LABELS[i % 2] / f"vid{i:05d}_000000_000003.mp4", frames)
    folder = root / "ssv1" / "20bn-something-something-v1" / str(i)
    folder.mkdir(parents=True)
    for n, frame in enumerate(frames, 1):
        Image.fromarray(frame).save(folder / f"{n:05d}.jpg", quality=90)


def make_layouts(root: Path, count: int) -> dict[str, DataConfig]:
    """The raw datasets: SSv2 (labels JSON + list JSON + webm), Kinetics (CSV + per-class mp4), SSv1
    (CSV + JPEG frame folders), the same scenes in each."""
    (root / "ssv2").mkdir()
    (root / "ssv2" / "something-something-v2-labels.json").write_text(
        json.dumps({c: str(i) for i, c in enumerate(CLASSES)})
    )
    entries = [{"id": str(i), "template": CLASSES[i % 2]} for i in range(count)]
    (root / "ssv2" / "something-something-v2-train.json").write_text(json.dumps(entries))
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    (root / "ssv1").mkdir()
    (root / "ssv1" / "something-something-v1-labels.csv").write_text("\n".join(CLASSES) + "\n")
    lines = [f"{i};{CLASSES[i % 2]}" for i in range(count)]
    (root / "ssv1" / "something-something-v1-train.csv").write_text("\n".join(lines) + "\n")
    rows += [f"{K400_LABELS[i % 2]},vid{i:05d},0,3,train,0" for i in range(count)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:  # minutes serially at GPU-machine sizes
        list(pool.map(functools.partial(write_scene, root), range(count), chunksize=8))
    (root / "k400" / "train.csv").write_text("\n".join(rows) + "\n")
    return {
        "SSv2 raw (webm/VP9 240p)": DataConfig(format="ssv2", root=str(root / "ssv2"), **COMMON),
        "K400 raw (mp4/H.264 240p, dense)": DataConfig(
            format="kinetics400", root=str(root / "k400"), sampling="dense", frame_stride=2, **COMMON
        ),
        "SSv1 raw (JPEG frames 240p)": DataConfig(format="ssv1", root=str(root / "ssv1"), **COMMON),
    }


def make_prepared(root: Path, raw: dict[str, DataConfig], short_side: int, workers: int) -> dict[str, DataConfig]:
    """``prepare_dataset`` copies: SSv2 with each codec, SSv1 frames; the configs change only data.root."""
    ssv2, ssv1 = raw["SSv2 raw (webm/VP9 240p)"], raw["SSv1 raw (JPEG frames 240p)"]
    out = {}
    for codec in CODECS:
        dst = root / f"ssv2-{codec}"
        prepare_dataset(ssv2.root, dst, short_side, codec=codec, workers=workers, progress=False)
        out[f"SSv2 prepared {codec} {short_side}p"] = dataclasses.replace(ssv2, root=str(dst))
    prepare_dataset(ssv1.root, root / "ssv1-prepared", short_side, workers=workers, progress=False)
    out[f"SSv1 prepared (JPEG frames {short_side}p)"] = dataclasses.replace(ssv1, root=str(root / "ssv1-prepared"))
    return out


def media_kb(root: str, count: int) -> float:
    """Kilobytes of video or frame files per sample under ``root`` (annotations left out)."""
    files = [p for p in Path(root).rglob("*") if p.is_file() and p.suffix not in (".json", ".csv")]
    return sum(p.stat().st_size for p in files) / count / 1024


class FixedClips(Dataset):
    """The pipeline without decoding: every item is the same uint8 clip (the loader's own ceiling)."""

    def __init__(self, count: int) -> None:
        self.count, self.clip = count, torch.randint(0, 256, (3, 16, 160, 160), dtype=torch.uint8)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return {"clip": self.clip.clone(), "target": torch.tensor(0), "index": key[0]}


def loader_rate(source: DataConfig | Dataset, batch: int, workers: int, epochs: int = 2) -> tuple[float, float]:
    """(clips/s over ``epochs`` after a warm-up one, CPU ms per clip) of the Trainer's loader: uint8 clips,
    as it ships them (the consumer normalises a batch on its device). The CPU time is that of every process
    (workers and this one, warm-up included), taken once the workers have exited: on a shared machine it
    does not depend on how much of the CPU the others left us. A ``Dataset`` is measured as it is."""
    gc.collect()
    cpu0, clips_all = os.times(), 0
    cfg = source if isinstance(source, DataConfig) else DataConfig()
    dataset = build_dataset(cfg, "train", train=True) if isinstance(source, DataConfig) else source
    dataset.uint8_clips = True
    loader = build_loader(dataset, batch, train=True, cfg_data=cfg, num_workers=workers)
    clips = 0
    for epoch in range(epochs + 1):
        loader.sampler.set_epoch(epoch)
        if epoch == 1:  # epoch 0 warms the workers up
            start, clips = time.perf_counter(), 0
        for b in loader:
            clips += len(b["clip"])
            clips_all += len(b["clip"])
    rate = clips / (time.perf_counter() - start)
    del b, loader  # the workers exit (and are waited for: their CPU time is counted)
    gc.collect()
    cpu1 = os.times()
    cpu = sum(getattr(cpu1, f) - getattr(cpu0, f) for f in ("user", "system", "children_user", "children_system"))
    return rate, 1000 * cpu / clips_all


def normalised_rate(batch: int, workers: int, count: int) -> float:
    """The ceiling of the old measurement, which normalised each batch to float32 in the main process:
    fixed clips, plus ``normalize_clips`` on the CPU (what a GPU does in training)."""
    cfg = DataConfig()
    loader = build_loader(FixedClips(count), batch, train=True, cfg_data=cfg, num_workers=workers)
    clips = 0
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        if epoch == 1:
            start, clips = time.perf_counter(), 0
        for b in loader:
            clips += len(normalize_clips(b["clip"], cfg.mean, cfg.std))
    return clips / (time.perf_counter() - start)


def train_step_rate(batch: int, steps: int = 3) -> float:
    """Clips/s that SEVNet-S's training step consumes at 16x160x160."""
    model = create_model("sevnet_s", num_classes=174)
    x, y = torch.randn(batch, 3, 16, 160, 160), torch.randint(0, 174, (batch,))
    return batch * train_steps_per_second(model, x, y, steps)


def measure(
    variants: dict[str, DataConfig | Dataset], batch: int, workers: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Clips/s and CPU ms per clip of every variant, ``rounds`` times, interleaved (each round measures all once)."""
    rates: dict[str, list[float]] = {name: [] for name in (*variants, NORMALISED)}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, source in variants.items():
            rate, ms = loader_rate(source, batch, workers)
            rates[name].append(rate)
            cpu[name].append(ms)
        rates[NORMALISED].append(normalised_rate(batch, workers, len(variants[FIXED])))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v[-1]:.0f}" for v in rates.values()), flush=True)
    return rates, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short-side", type=int, default=182, help="prepared short side (default: min train_scale)")
    parser.add_argument("--repeats", type=int, default=4, help="data.repeats of the repeated-augmentation rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        raw = make_layouts(Path(tmp), args.videos)
        print(f"wrote {3 * args.videos} videos / frame folders in {time.perf_counter() - t0:.0f} s", flush=True)
        t0 = time.perf_counter()
        prepared = make_prepared(Path(tmp), raw, args.short_side, os.cpu_count() or 1)
        print(f"prepared {len(prepared)} copies in {time.perf_counter() - t0:.0f} s", flush=True)
        base, k = "SSv2 raw (webm/VP9 240p)", args.repeats
        variants = {**raw, **prepared, f"{base}, repeats {k}": dataclasses.replace(raw[base], repeats=k)}
        for codec in (DEFAULT_CODEC, "h264-fastdecode"):
            name = f"SSv2 prepared {codec} {args.short_side}p"
            variants[f"{name}, repeats {k}"] = dataclasses.replace(prepared[name], repeats=k)
        variants[FIXED] = FixedClips(4 * args.videos)
        sizes = {name: media_kb(v.root, args.videos) for name, v in variants.items() if isinstance(v, DataConfig)}
        consume = train_step_rate(args.batch)
        rates, cpu = measure(variants, args.batch, args.workers, args.rounds)
    print(f"\n| variant | KB per video | loader clips/s | x raw webm | CPU ms per clip | x raw webm (CPU) | "
          f"loader / SEVNet-S step ({consume:.1f}/s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, values in rates.items():
        ratio = statistics.median(v / b for v, b in zip(values, rates[base]))
        rate, size = statistics.median(values), f"{sizes[name]:.0f}" if name in sizes else "-"
        ms = f"{statistics.median(cpu[name]):.1f}" if name in cpu else "-"
        saving = f"{statistics.median(b / v for v, b in zip(cpu[name], cpu[base])):.2f}x" if name in cpu else "-"
        print(f"| {name} | {size} | {rate:.1f} | {ratio:.2f}x | {ms} | {saving} | {rate / consume:.1f}x |")
    print(f"\n16x{COMMON['train_crop']}x{COMMON['train_crop']} clips (train_scale {COMMON['train_scale']}), uint8 "
          f"batches of {args.batch}, {args.workers} loader workers, {args.videos} videos of {FRAMES} frames; medians "
          f"of {args.rounds} interleaved rounds (x raw webm: median of the per-round ratios; CPU: all processes, "
          f"warm-up epoch included); training step on "
          f"{torch.get_num_threads()} threads (float32, CPU), measured in this run.")  # fmt: skip


if __name__ == "__main__":
    main()

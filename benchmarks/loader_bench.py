"""Does the data loader keep a SEVNet-S training step fed? Clips/s of the loader alone for each
on-disk layout at a typical training setting (16x160x160, 2 workers), next to the clips/s that
SEVNet-S's training step (forward + backward + SGD, batch 8) consumes, in one run.

Writes small real datasets first (240 px high, 3 s at 12 fps, like SSv2): webm/VP9 (SSv2 layout),
mp4/H.264 (Kinetics layout), JPEG frame folders (SSv1 layout).

    python benchmarks/loader_bench.py [--videos 48] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _videos import write_frame_folder, write_video

from sevnet.data import DataConfig, build_dataset, build_loader, normalize_clips
from sevnet.models import create_model
from sevnet.timing import train_steps_per_second

COMMON = {"num_frames": 16, "train_scale": [182, 228], "train_crop": 160}


def make_layouts(root: Path, count: int) -> dict[str, DataConfig]:
    frames = 36
    size = (240, 320)
    # SSv2: labels JSON + list JSON + webm
    labels = {"Pushing something": "0", "Pulling something": "1"}
    (root / "ssv2").mkdir()
    (root / "ssv2" / "something-something-v2-labels.json").write_text(json.dumps(labels))
    entries = [{"id": str(i), "template": ["Pushing something", "Pulling something"][i % 2]} for i in range(count)]
    (root / "ssv2" / "something-something-v2-train.json").write_text(json.dumps(entries))
    for i in range(count):
        write_video(root / "ssv2" / "20bn-something-something-v2" / f"{i}.webm", num_frames=frames, size=size)
    # Kinetics: CSV + per-class mp4
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    for i in range(count):
        label = ["abseiling", "juggling balls"][i % 2]
        rows.append(f"{label},vid{i:05d},0,3,train,0")
        write_video(root / "k400" / "train" / label / f"vid{i:05d}_000000_000003.mp4", num_frames=frames, size=size)
    (root / "k400" / "train.csv").write_text("\n".join(rows) + "\n")
    # SSv1: CSV + JPEG frame folders
    (root / "ssv1").mkdir()
    (root / "ssv1" / "something-something-v1-labels.csv").write_text("Pushing something\nPulling something\n")
    lines = [f"{i};{['Pushing something', 'Pulling something'][i % 2]}" for i in range(count)]
    (root / "ssv1" / "something-something-v1-train.csv").write_text("\n".join(lines) + "\n")
    for i in range(count):
        write_frame_folder(root / "ssv1" / "20bn-something-something-v1" / str(i), num_frames=frames, size=size)
    return {
        "SSv2 (webm/VP9, segment)": DataConfig(format="ssv2", root=str(root / "ssv2"), sampling="segment", **COMMON),
        "K400 (mp4/H.264, dense)": DataConfig(
            format="kinetics400", root=str(root / "k400"), sampling="dense", frame_stride=2, **COMMON
        ),
        "SSv1 (JPEG frames, segment)": DataConfig(format="ssv1", root=str(root / "ssv1"), sampling="segment", **COMMON),
    }


def loader_rate(cfg: DataConfig, batch: int, workers: int, epochs: int = 2) -> float:
    dataset = build_dataset(cfg, "train", train=True)
    dataset.uint8_clips = True  # as the Trainer's loader: uint8 batches, normalised where they are used
    loader = build_loader(dataset, batch, train=True, cfg_data=cfg, num_workers=workers)
    clips = 0
    for epoch in range(epochs + 1):
        loader.sampler.set_epoch(epoch)
        if epoch == 1:  # epoch 0 warms the workers up
            start, clips = time.perf_counter(), 0
        for b in loader:
            clips += len(normalize_clips(b["clip"], cfg.mean, cfg.std))
    return clips / (time.perf_counter() - start)


def train_step_rate(batch: int, steps: int = 3) -> float:
    """Clips/s that SEVNet-S's training step consumes at 16x160x160."""
    model = create_model("sevnet_s", num_classes=174)
    x, y = torch.randn(batch, 3, 16, 160, 160), torch.randint(0, 174, (batch,))
    return batch * train_steps_per_second(model, x, y, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        layouts = make_layouts(Path(tmp), args.videos)
        print(f"wrote {3 * args.videos} videos / frame folders in {time.perf_counter() - t0:.0f} s")
        consume = train_step_rate(args.batch)
        print(f"\n{'layout':<30}{'loader clips/s':>16}{'SEVNet-S step clips/s':>24}{'ratio':>8}")
        for name, cfg in layouts.items():
            rate = loader_rate(cfg, args.batch, args.workers)
            print(f"{name:<30}{rate:>16.1f}{consume:>24.1f}{rate / consume:>7.1f}x")
    print(f"\n16x160x160 clips, batch {args.batch}, {args.workers} loader workers, training step on "
          f"{torch.get_num_threads()} threads (float32, CPU); both measured in this run.")  # fmt: skip


if __name__ == "__main__":
    main()

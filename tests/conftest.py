"""Shared fixtures: small datasets of real encoded videos, built once per test session."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tools"))  # dataset generators: photo_motion, ssv2_layout
from _videos import write_video


@pytest.fixture(autouse=True)
def _default_sigchld():
    """Restore SIGCHLD's default disposition after each test. PyTorch's DataLoader installs a
    SIGCHLD handler in the test process once a loader has workers; after OpenVINO's threads are
    loaded too (test_deploy), any child process exiting then crashed the test process (SIGSEGV).
    One process never mixes the three in sevnet's own commands; the test process does."""
    yield
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _moving_square(direction: int, start: int, colour: int, frames: int = 8, size: int = 32) -> list[np.ndarray]:
    """A square moving left (direction -1) or right (+1): the class is only in the motion."""
    out = []
    for t in range(frames):
        img = np.full((size, size, 3), 40, np.uint8)
        x = int(np.clip(start + direction * 2 * t, 0, size - 8))
        img[12:20, x : x + 8] = colour
        out.append(img)
    return out


@pytest.fixture(scope="session")
def motion_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generic video list: 2 classes (moving left / right), 24 train and 8 val mp4 videos."""
    root = tmp_path_factory.mktemp("motion")
    rng = np.random.default_rng(0)
    (root / "classes.txt").write_text("moving left\nmoving right\n")
    for split, count in (("train", 24), ("val", 8)):
        lines = []
        for i in range(count):
            label = i % 2
            direction = -1 if label == 0 else 1
            start = int(rng.integers(14, 18))
            frames = _moving_square(direction, start, int(rng.integers(150, 255)))
            name = f"{split}/{i:03d}.mp4"
            write_video(root / name, frames=frames, size=(32, 32), fps=8)
            lines.append(f"{name} {label}\n")
        (root / f"{split}_list.txt").write_text("".join(lines))
    return root


def tiny_config_overrides(root: Path, out_dir: Path, **extra: object) -> list[str]:
    """Overrides that make a training run of a tiny SEVNet on ``motion_dataset`` take seconds."""
    base = {
        "model.name": "sevnet_xs",
        "model.dropout": 0.0,
        "model.overrides": "{stages: [[16, 8, 1], [32, 16, 1], [32, 16, 1], [64, 32, 1]], head_channels: 64}",
        "data.format": "video_list",
        "data.root": str(root),
        "data.labels_file": "classes.txt",
        "data.num_frames": 8,
        "data.train_scale": "[32, 32]",
        "data.train_crop": 32,
        "data.eval_scale": 32,
        "data.eval_crop": 32,
        "data.num_workers": 0,
        "train.epochs": 4,
        "train.batch_size": 4,
        "train.out_dir": str(out_dir),
        "train.progress": False,
        "train.device": "cpu",  # tests of CPU behaviour (exact figures, gloo DDP); test_device.py runs the GPU
        "optim.lr": 0.1,
        "optim.base_batch": 4,
        "optim.warmup_epochs": 0.5,
        "optim.weight_decay": 0.0,
        "eval.batch_size": 4,
    }
    base.update({k: v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]

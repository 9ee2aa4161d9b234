"""Logs that read well anywhere: ``sevnet train ... > log 2>&1`` holds plain lines (no carriage-return
bar redraws), one per epoch and per quarter of a long epoch or cache build, and the same lines go to
``<out_dir>/train.log``. A real run of the CLI in a subprocess on real encoded videos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _videos import write_video

from sevnet.progress import LineProgress, log_to, say


def _folder(root: Path, per_class: int = 5) -> Path:
    for c, name in enumerate(("left", "up")):
        for i in range(per_class):
            write_video(root / name / f"{i}.mp4", num_frames=10 + i + c)
    return root


def test_a_redirected_training_log_has_plain_lines_and_train_log_holds_them(tmp_path: Path) -> None:
    data, out, log = _folder(tmp_path / "videos"), tmp_path / "run", tmp_path / "console.txt"
    overrides = [f"data.root={data}", f"train.out_dir={out}", "train.max_minutes=0", "train.expected_steps=0",
                 "train.epochs=2", "train.batch_size=1", "eval.every_epochs=1", "data.flip=off",
                 "train.epoch_clips=0", "train.device=cpu"]  # fmt: skip  # one pass per epoch: a few steps
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    with log.open("w") as console:  # stdout and stderr both to a file, as `> log 2>&1`
        done = subprocess.run([sys.executable, "-m", "sevnet", "train", "folder_sevnet_xs", *overrides],
                              stdout=console, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    assert "caching train frames: 8/8 videos (100%)" in text and "caching val frames: 2/2" in text  # closing lines
    assert "epoch 1/2: 2/8 batches (25%)" in text and "left" in text  # a quarter of an epoch, with the time left
    assert "epoch 1 | loss" in text and "epoch 2 | loss" in text
    assert "FutureWarning" not in text
    # what happened: the device, the run folder, the split and where it went; at the end, the files
    assert "training on cpu" in text
    assert f"run folder {out}: 8 training clips, 2 validation, 2 classes; the split drawn from {data} is saved in " \
           f"{out.resolve() / 'split.csv'}" in text  # fmt: skip
    assert f"wrote {out}/: checkpoints/model.safetensors, checkpoints/last.safetensors, config.yaml" in text
    assert not (out / ".loading").exists()  # the loaders' crash traces go with a finished run
    assert b"\r" not in (out / "split.csv").read_bytes() and b"\r" not in (out / "metrics.csv").read_bytes()
    mask = os.umask(0o022)
    os.umask(mask)
    assert (out / "checkpoints" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask  # as an export
    run_log = (out / "train.log").read_text()
    for line in (
        "epoch 1 | loss",
        "epoch 2 | loss",
        "epoch 1/2: 4/8 batches (50%)",
        "caching train frames: 2/8 videos (25%)",
    ):
        assert line in run_log
    assert "\r" not in run_log


def test_line_progress_prints_each_quarter_once_and_only_for_long_loops(tmp_path: Path, capsys) -> None:
    with log_to(tmp_path / "a.log", fresh=True):
        assert list(LineProgress(range(10), total=10, desc="work", unit="item")) == list(range(10))
        list(LineProgress(range(4), total=4, desc="short", unit="item"))  # below min_total: no lines
        with LineProgress(total=3, desc="built", unit="video", final=True) as bar:
            bar.update(3)
        say("last")
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1].split(",")[0] for line in out[:3]] == [" 3/10 items (30%)", " 5/10 items (50%)",
                                                                      " 8/10 items (80%)"]  # fmt: skip
    assert out[3].startswith("built: 3/3 videos (100%)") and out[4] == "last" and len(out) == 5
    assert (tmp_path / "a.log").read_text().splitlines() == out  # the same lines in the log
    say("after")  # the log is closed: printed only
    assert "after" not in (tmp_path / "a.log").read_text()

"""Issue 13, "lose nothing": a run folder belongs to one run (refusal, lock, --overwrite), --resume on a
finished run changes nothing and checks the checkpoint first, a failed save is named and leaves no
temp file, and environment values never reach a run's artifacts. Tiny in-memory clips, seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_trainer import Clips, linear_model

from sevnet.cli import main
from sevnet.engine import CheckpointError, Trainer, load_config
from sevnet.engine.rundir import RunFolderError
from sevnet.errors import ConfigError


def config(out: Path, **extra: object) -> object:
    base = {"train.out_dir": str(out), "train.progress": False, "train.batch_size": 4, "train.epochs": 2,
            "optim.base_batch": 4, "optim.lr": 0.1, "data.num_workers": 0, "train.device": "cpu"}  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in {**base, **extra}.items()])


def run(out: Path, resume: bool = False, overwrite: bool = False, allow: tuple[str, ...] = (), **extra: object):
    return Trainer(config(out, **extra), model=linear_model(), train_set=Clips(16)).fit(resume, overwrite, allow)


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_existing_run_folder_is_refused_locked_and_overwritten_only_on_request(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run(out).steps == 8
    before = files(out)
    with pytest.raises(RunFolderError) as refused:
        run(out, **{"train.epochs": 1})
    assert all(s in str(refused.value) for s in (str(out), "--resume", "train.out_dir", "--overwrite"))
    assert files(out) == before  # nothing touched
    # a live process holds the folder: refused, naming the pid and the lock file
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{holder.pid} {os.uname().nodename}\n")
        with pytest.raises(RunFolderError, match=rf"in use by another sevnet run \(pid {holder.pid}.*\.lock"):
            run(out, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    # a lock left by a dead process is reported and taken over; --overwrite replaces the run
    (out / ".lock").write_text(f"{dead_pid()} {os.uname().nodename}\n")
    assert run(out, overwrite=True, **{"train.epochs": 1}).steps == 4
    assert "no longer running" in capsys.readouterr().err
    assert (
        not (out / ".lock").exists()
        and files(out)["checkpoints/model.safetensors"] != before["checkpoints/model.safetensors"]
    )
    assert main(["train", str(out / "config.yaml"), "--overwrite", "--resume"]) == 2


def test_resume_of_a_finished_run_is_a_no_op_and_a_mismatch_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    first = run(out)
    before = files(out)
    again = run(out, resume=True)
    assert "already finished" in capsys.readouterr().out
    assert files(out) == before  # summary.json, model metadata and config.yaml untouched
    assert again.steps == first.steps == 8 and again.history == first.history
    with pytest.raises(CheckpointError, match=r"last\.safetensors: was written by a run with another model"):
        run(out, resume=True, allow=("model.name", "train.epochs"), **{"model.name": "x3d_xs", "train.epochs": 3})
    with pytest.raises(CheckpointError, match=r"another number of classes"):
        Trainer(config(out, **{"train.epochs": 3}), model=linear_model(3), train_set=Clips(16, 3)).fit(
            resume=True, allow_changed=["train.epochs"]
        )
    assert files(out) == before  # the failed resumes rewrote nothing, config.yaml included


def test_failed_save_names_the_file_and_leaves_no_temp_and_stale_temps_go(tmp_path: Path, monkeypatch) -> None:
    from safetensors import SafetensorError

    import sevnet.engine.checkpoint as ckpt

    out = tmp_path / "run"
    run(out, **{"train.epochs": 1})
    stale = out / "checkpoints" / ".last.safetensors.k3j2.tmp"
    stale.write_bytes(b"")  # what a save killed mid-write leaves

    def disk_full(tensors: dict, path: str, metadata: dict) -> None:
        Path(path).write_bytes(b"\0" * 10)
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(CheckpointError, match=r"last\.safetensors: could not save.*disk is full.*previous checkpoint"):
        run(out, resume=True, allow=("train.epochs",), **{"train.epochs": 2})
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.safetensors", "model.safetensors"]
    assert not stale.exists()  # removed when the resumed run started


def test_environment_values_never_reach_a_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SEVNET_TEST_SECRET", "hunter2")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  root: /data/${oc.env:SEVNET_TEST_SECRET}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.root: \$\{oc\.env:\.\.\.\} is not supported"):
        load_config(cfg_file)
    with pytest.raises(ConfigError, match=r"model\.name: \$\{oc\.env"):
        load_config(None, ["model.name=${oc.env:SEVNET_TEST_SECRET}"])
    assert main(["train", str(cfg_file), f"train.out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sevnet train: error:") and "hunter2" not in err
    assert not (tmp_path / "run").exists()


def test_resume_with_a_changed_config_is_refused_naming_the_keys(motion_dataset: Path, tmp_path: Path, capsys) -> None:
    """Issue 25 item 4, through the CLI on real videos: a changed key is refused by name before any data is
    read (nothing written, config.yaml kept); keys that do not change the training are noted; a finished
    run stays a no-op; --allow-changed goes on with the change, explicitly."""
    from conftest import tiny_config_overrides
    from omegaconf import OmegaConf

    out = tmp_path / "run"
    cfg_file = tmp_path / "c.yaml"
    overrides = tiny_config_overrides(motion_dataset, out, **{"train.epochs": 1, "eval.every_epochs": 0})
    OmegaConf.save(load_config(None, overrides), cfg_file)
    assert main(["train", str(cfg_file)]) == 0
    run_cfg = str(out / "config.yaml")
    before = files(out)
    capsys.readouterr()
    assert main(["train", run_cfg, "--resume", "data.num_frames=4", "optim.lr=0.5", "train.max_minutes=5"]) == 2
    err = capsys.readouterr().err
    assert "data.num_frames: 8 -> 4; optim.lr: 0.1 -> 0.5; train.max_minutes: 0.0 -> 5.0" in err
    assert "--allow-changed data.num_frames,optim.lr,train.max_minutes" in err and "valid keys" not in err
    assert main(["train", run_cfg, "--resume", "model.overrides.head_channels=32"]) == 2  # a depth/width change
    assert "model.overrides.head_channels: 64 -> 32" in capsys.readouterr().err
    assert files(out) == before  # nothing read, cached or written: config.yaml kept
    # keys that do not change what is trained: noted; the finished run stays a no-op
    assert main(["train", run_cfg, "--resume", "data.num_workers=1", "eval.batch_size=2"]) == 0
    printed = "".join(capsys.readouterr())
    assert "note: resuming with changed config keys: data.num_workers: 0 -> 1; eval.batch_size: 4 -> 2" in printed
    assert "already finished" in printed
    assert {k: v for k, v in files(out).items() if k != "train.log"} == {
        k: v for k, v in before.items() if k != "train.log"
    }  # the log says what was tried; nothing else is written
    # an explicit extension trains on, and config.yaml records it
    assert main(["train", run_cfg, "--resume", "train.epochs=2", "--allow-changed", "train.epochs"]) == 0
    assert load_config(out / "config.yaml").train.epochs == 2
    assert json.loads((out / "summary.json").read_text())["steps"] == 12


def test_run_files_are_written_atomically_and_a_failed_write_names_the_file(tmp_path: Path, monkeypatch) -> None:
    """summary.json, metrics.csv, config.yaml and skipped.csv go through a temporary file and a rename: a
    full disk (or a kill) mid-write leaves the previous version whole and no temporary file."""
    import errno

    from sevnet.engine import rundir

    out = tmp_path / "run"
    run(out, **{"train.epochs": 1})
    before = files(out)
    assert {"summary.json", "metrics.csv", "config.yaml", "skipped.csv"} <= set(before)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", disk_full)
    with pytest.raises(
        RunFolderError, match=r"config\.yaml: could not write \(No space left on device\); the previous"
    ):
        run(out, resume=True, allow=("train.epochs",), **{"train.epochs": 2})
    assert files(out) == before  # nothing half-written, no temporary file left


def test_a_key_newer_than_the_run_counts_as_its_default_on_resume() -> None:
    """A checkpoint written before a config key existed resumes under a newer sevnet (the key at its
    default is no change); set to another value, it is named like any change."""
    from sevnet.engine.checkpoint import check_resume_config
    from sevnet.engine.config import to_container

    current = to_container(load_config(None, ["train.epochs=3"]))
    recorded = to_container(load_config(None, ["train.epochs=3"]))
    del recorded["data"]["max_pixels"], recorded["train"]["expected_steps"]  # as an older sevnet wrote it
    assert check_resume_config("last.safetensors", recorded, current) == []
    with pytest.raises(CheckpointError, match=r"data\.max_pixels: 8847360 -> 100\b"):
        check_resume_config("last.safetensors", recorded, to_container(load_config(None, ["data.max_pixels=100"])))


def test_a_second_run_into_a_finished_run_folder_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    """Another data.root into the same out_dir: the existing-run message, before the split is drawn
    or a frame is decoded (not "listed videos are missing" from the old split.csv)."""
    from _videos import write_video

    for name in ("left", "up"):
        for i in range(3):
            write_video(tmp_path / "a" / name / f"{i}.mp4", num_frames=8)
    out = tmp_path / "run"
    base = [f"train.out_dir={out}", "train.max_minutes=0", "train.expected_steps=0", "train.epochs=1",
            "train.batch_size=4", "data.cache=off", "eval.every_epochs=0", "train.progress=false",
            "train.epoch_clips=0"]  # fmt: skip
    assert main(["train", "folder_sevnet_xs", f"data.root={tmp_path / 'a'}", *base]) == 0
    split = (out / "split.csv").read_bytes()
    capsys.readouterr()
    assert main(["train", "folder_sevnet_xs", f"data.root={tmp_path / 'not-there'}", *base]) == 2
    err = capsys.readouterr().err
    assert f"{out} already holds a finished run" in err and "--overwrite" in err
    assert (out / "split.csv").read_bytes() == split
    # A run that stopped before its first checkpoint left a config and a log, nothing to resume: a fresh
    # run replaces them without --overwrite
    failed = tmp_path / "failed"
    (failed / "checkpoints").mkdir(parents=True)
    (failed / "config.yaml").write_text("stale: true\n")
    (failed / "train.log").write_text("sevnet train: error: ...\n")
    assert main(["train", "folder_sevnet_xs", f"data.root={tmp_path / 'a'}", *base, f"train.out_dir={failed}"]) == 0
    assert "stale" not in (failed / "config.yaml").read_text() and (failed / "summary.json").is_file()

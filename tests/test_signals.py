"""Issue 25 item 8: SIGTERM (what SLURM, Kubernetes and spot instances send before SIGKILL) stops a real
`sevnet train` process after its step: checkpoint saved, lock released, the resume command printed,
exit 143; the printed command resumes it to the end. Also with two torchrun gloo ranks. Ctrl-C
(SIGINT) stops the same way (130)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config_overrides
from omegaconf import OmegaConf

from sevnet.engine import load_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def _config(motion_dataset: Path, tmp_path: Path, **extra: object) -> tuple[Path, Path]:
    out = tmp_path / "run"
    overrides = tiny_config_overrides(motion_dataset, out, **{"train.epochs": 6, "eval.every_epochs": 0, **extra})
    cfg_file = tmp_path / "c.yaml"
    OmegaConf.save(load_config(None, overrides), cfg_file)
    return cfg_file, out


def _stop_after_first_epoch(cmd: list[str], signum: int, cwd: Path) -> tuple[int, str, str]:
    """Start ``cmd`` in its own process group, send ``signum`` to the whole group (loader workers and
    torchrun ranks included) once an epoch line is out, and return (status, stdout, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd,
                            start_new_session=True)  # fmt: skip
    seen = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 1") or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_releases_the_lock_and_says_how_to_resume(
    motion_dataset: Path, tmp_path: Path, signum: int
) -> None:
    cfg_file, out = _config(motion_dataset, tmp_path, **{"data.num_workers": 1})  # a loader worker gets it too
    cmd = [sys.executable, "-m", "sevnet", "train", str(cfg_file)]
    status, stdout, err = _stop_after_first_epoch(cmd, signum, tmp_path)
    assert status == 128 + signum, stdout[-2000:] + err[-3000:]
    assert "Traceback" not in err, err
    resume = f"Resume with: sevnet train {out / 'config.yaml'} --resume"
    assert f"stopped by {signal.Signals(signum).name} at epoch 2" in err and resume in err
    assert not (out / ".lock").exists()
    assert (out / "checkpoints" / "last.safetensors").is_file()
    assert not (out / "checkpoints" / "model.safetensors").exists()
    done = subprocess.run([sys.executable, "-m", "sevnet", "train", str(out / "config.yaml"), "--resume"],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 36 and [r["epoch"] for r in summary["history"]] == [1, 2, 3, 4, 5, 6]


def test_sigterm_under_torchrun_stops_every_rank_at_the_same_step(motion_dataset: Path, tmp_path: Path) -> None:
    cfg_file, out = _config(motion_dataset, tmp_path, **{"train.batch_size": 2, "optim.base_batch": 4})
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    status, stdout, err = _stop_after_first_epoch([*torchrun, "-m", "sevnet", "train", str(cfg_file)],
                                                  signal.SIGTERM, tmp_path)  # fmt: skip
    assert err.count("Resume with: sevnet train") == 1, stdout[-2000:] + err[-4000:]  # rank 0 says it once
    assert "sevnet/" not in err.partition("Traceback")[2], err[-4000:]  # torchrun's own traceback only
    assert not (out / ".lock").exists()
    step = json.loads(_meta(out / "checkpoints" / "last.safetensors"))["step"]
    assert 6 <= step < 36  # saved mid-run, after the first epoch (6 steps of 2 x 2 clips)
    assert status != 0  # torchrun reports the stop as a failure (the ranks exited 143)


def _meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["meta"]

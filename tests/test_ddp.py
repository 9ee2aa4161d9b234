"""Real DDP: two gloo processes under torchrun on this CPU, against one process on the same
global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import tiny_config_overrides
from omegaconf import OmegaConf
from safetensors.torch import load_file

from sevnet import create_model
from sevnet.engine import load_config


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_ddp_two_processes_match_one_process(motion_dataset: Path, tmp_path: Path) -> None:
    # 7 validation videos: an odd count, so a padding sampler would score one twice.
    lines = (motion_dataset / "val_list.txt").read_text().splitlines()[:7]
    (tmp_path / "val7.txt").write_text("\n".join(lines) + "\n")
    # Batch 1 per process: BatchNorm then sees the same samples in both set-ups (per-rank BN
    # statistics would otherwise differ from one process's statistics over the whole batch).
    common = {"train.epochs": 2, "train.batch_size": 1, "data.val_list": str(tmp_path / "val7.txt"),
              "train.deterministic": "true", "optim.base_batch": 2,
              "train.amp": "off"}  # fmt: skip  # float32: compared to 1e-4 (amp auto is bf16 on an AMX CPU)
    ddp_cfg, one_cfg = tmp_path / "ddp.yaml", tmp_path / "one.yaml"
    OmegaConf.save(load_config(None, tiny_config_overrides(motion_dataset, tmp_path / "ddp", **common)), ddp_cfg)
    OmegaConf.save(
        load_config(None, tiny_config_overrides(motion_dataset, tmp_path / "one", **common, **{"train.grad_accum": 2})),
        one_cfg,
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, "-m", "sevnet", "train", str(ddp_cfg)], tmp_path)
    _run([sys.executable, "-m", "sevnet", "train", str(one_cfg)], tmp_path)

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    digests = summary["weights_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1], "ranks ended with different weights"
    assert summary["metrics"]["num_samples"] == 7, "distributed evaluation must score each sample once"
    assert summary["steps"] == json.loads((tmp_path / "one" / "summary.json").read_text())["steps"] == 24

    names = {n for n, _ in create_model("sevnet_xs", num_classes=2).named_parameters()}
    ddp = load_file(str(tmp_path / "ddp" / "checkpoints" / "model.safetensors"))
    one = load_file(str(tmp_path / "one" / "checkpoints" / "model.safetensors"))
    params = [k for k in ddp if k.removeprefix("model.") in names]
    assert params
    for key in params:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    # only rank 0 writes: one checkpoint folder, one metrics file
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "last.safetensors",
        "model.safetensors",
    ]


def test_ddp_ranks_count_each_others_bad_files_and_stop_together(motion_dataset: Path, tmp_path: Path) -> None:
    """Two missing files of 26 (7.7% > 4.5%): a rank that drew one of them alone (3.8%) must still stop,
    with the other rank, instead of training on or waiting for it forever."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(motion_dataset, root)
    with (root / "train_list.txt").open("a") as f:
        f.write("missing.mp4 0\ngone.mp4 1\n")
    cfg = tmp_path / "ddp.yaml"
    extra = {"train.epochs": 2, "train.batch_size": 2, "data.max_skip_fraction": 0.045}
    OmegaConf.save(load_config(None, tiny_config_overrides(root, tmp_path / "ddp", **extra)), cfg)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*torchrun, "-m", "sevnet", "train", str(cfg)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode != 0
    assert "2 of the 26 training videos could not be loaded" in done.stdout + done.stderr

"""Training engine: end to end on real videos, metrics, checkpoints, faults, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config_overrides
from safetensors.torch import load_file

from sevnet.cli import main
from sevnet.engine import CheckpointError, NonFiniteLossError, load_config, load_model, read_meta, train
from sevnet.engine.checkpoint import save_checkpoint
from sevnet.engine.metrics import classification_metrics, multilabel_metrics


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_train_end_to_end_then_eval(motion_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    result = train(load_config(None, tiny_config_overrides(motion_dataset, out, **{"train.epochs": 6})))
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] * 0.5, losses
    assert set(result.metrics) >= {"top1", "top5", "mean_class_accuracy"}
    assert 0 <= result.metrics["top1"] <= 1 and result.metrics["num_samples"] == 8
    for name in (
        "metrics.csv",
        "training_curves.png",
        "config.yaml",
        "summary.json",
        "checkpoints/last.safetensors",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    meta = read_meta(out / "checkpoints" / "model.safetensors")
    assert meta["class_names"] == ["moving left", "moving right"] and meta["data"]["num_frames"] == 8
    # `sevnet eval` with multi-view testing (2 clips x 3 crops) on the saved checkpoint
    cfg_file = out / "config.yaml"
    code = main(["eval", str(cfg_file), "data.eval_clips=2", "data.eval_crops=3", "--checkpoint",
                 str(out / "checkpoints" / "model.safetensors"), "--out", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {"top1", "top5", "mean_class_accuracy"} <= set(report) and report["num_samples"] == 8
    assert report["views"] == {"clips": 2, "crops": 3, "both_ways": False}
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 1000


def test_metrics_against_hand_computed_values() -> None:
    # 6 samples, unbalanced: class 0 x4 (all right), class 1 x2 (one right) -> top1 5/6, mean class 0.75
    probs = torch.tensor([[0.9, 0.1, 0.0]] * 4 + [[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    targets = torch.tensor([0, 0, 0, 0, 1, 1])
    m = classification_metrics(probs, targets)
    assert m["top1"] == pytest.approx(5 / 6) and m["mean_class_accuracy"] == pytest.approx(0.75)
    assert m["top5"] == pytest.approx(1.0)
    # mAP: class 0 positives ranked 1st and 3rd of 3 -> AP = (1 + 2/3) / 2; class 1: one positive ranked 1st -> 1
    scores = torch.tensor([[0.9, 0.1], [0.5, 0.8], [0.3, 0.2]])
    labels = torch.tensor([[1, 0], [0, 1], [1, 0]])
    assert multilabel_metrics(scores, labels)["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['SEVNET_TEST_MARKER']}",))


def test_pickled_checkpoint_is_refused_and_never_runs(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("SEVNET_TEST_MARKER", str(marker))
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    with pytest.raises(CheckpointError, match=r"evil.pt.*pickled"):
        load_model(evil)
    assert not marker.exists()
    assert main(["eval", "none.yaml", "--checkpoint", str(evil)]) == 2
    assert not marker.exists()


def test_checkpoint_mismatch_errors_name_the_file(tmp_path: Path) -> None:
    from sevnet import create_model

    path = tmp_path / "m.safetensors"
    data = {"num_frames": 8, "eval_scale": 32, "eval_crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    meta = {"model": "sevnet_xs", "model_overrides": {}, "num_classes": 5, "class_names": list("abcde"), "data": data}
    save_checkpoint(path, create_model("sevnet_xs", num_classes=5), meta)
    with pytest.raises(CheckpointError, match=r"m\.safetensors: has 5 classes, expected 7"):
        load_model(path, expect_num_classes=7)
    with pytest.raises(CheckpointError, match="holds model 'sevnet_xs', expected 'sevnet_s'"):
        load_model(path, expect_model="sevnet_s")
    meta["model"] = "sevnet_s"
    save_checkpoint(path, create_model("sevnet_xs", num_classes=5), meta)  # weights of another model
    with pytest.raises(CheckpointError, match=r"m\.safetensors: its metadata .* describes .* but the file holds"):
        load_model(path)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(motion_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(load_config(None, tiny_config_overrides(motion_dataset, out, **{"train.epochs": 1})))
    last = out / "checkpoints" / "last.safetensors"
    before = weights(last)
    # a tiny (valid) std overflows float32 in the first layers: the loss is NaN from the first step
    bad = tiny_config_overrides(motion_dataset, out, **{"train.epochs": 2, "data.std": "[1e-38, 1e-38, 1e-38]"})
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, batch 0, optimizer step 6.*last good checkpoint"):
        train(load_config(None, bad), resume=True, allow_changed=["train.epochs", "data.std"])
    after = weights(last)
    assert all(torch.equal(before[k], after[k]) for k in before)
    skip = tiny_config_overrides(motion_dataset, tmp_path / "skip", **{"train.epochs": 1, "data.std": "[1e-38, 1e-38, 1e-38]",
                                                                       "train.nan_policy": "skip"})  # fmt: skip
    result = train(load_config(None, skip))
    assert result.nonfinite_steps_skipped == 6 and result.steps == 0


def test_unknown_config_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trian"):
        load_config(None, ["trian.epochs=3"])
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "sevnet", *args]


def _config_file(overrides: list[str], path: Path) -> str:
    from omegaconf import OmegaConf

    OmegaConf.save(load_config(None, overrides), path)
    return str(path)


def test_resume_after_sigkill_is_bit_identical(motion_dataset: Path, tmp_path: Path) -> None:
    common = {
        "train.epochs": 5,
        "train.deterministic": "true",
        "train.ckpt_every_steps": 2,
        "model.dropout": 0.3,
    }
    ref = tiny_config_overrides(motion_dataset, tmp_path / "ref", **common)
    subprocess.run(
        _cli(["train", _config_file(ref, tmp_path / "ref.yaml")]), check=True, capture_output=True, env=_env()
    )
    killed = tiny_config_overrides(motion_dataset, tmp_path / "killed", **common)
    killed_cfg = _config_file(killed, tmp_path / "killed.yaml")
    proc = subprocess.Popen(_cli(["train", killed_cfg]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())  # fmt: skip
    last = tmp_path / "killed" / "checkpoints" / "last.safetensors"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    meta = read_meta(last)
    assert 0 < meta["step"] < 30, meta["step"]
    done = subprocess.run(_cli(["train", killed_cfg, "--resume"]), capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    a, b = (
        weights(tmp_path / "ref/checkpoints/model.safetensors"),
        weights(tmp_path / "killed/checkpoints/model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}


_WRITER = """
import sys, torch
from sevnet.engine.checkpoint import save_checkpoint
model = torch.nn.Linear(2000, 2000)
i = 0
while True:
    i += 1
    with torch.no_grad():
        model.weight.fill_(i)
    save_checkpoint(sys.argv[1], model, {"model": "x", "i": i})
"""


def test_kill_during_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)])
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(delay)  # the writer saves ~16 MB in a loop: the kill lands mid-write most times
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        meta = read_meta(path)  # parses: never a half-written file
        w = load_file(str(path))["model.weight"]
        assert torch.all(w == meta["i"]), "weights and metadata come from the same save"


_CRASHER = """
import os, signal, sys
from pathlib import Path
import sevnet.data.datasets as datasets
from sevnet.engine import WorkerCrashError, load_config, train

real = datasets.read_frames

def crashing(path, indices, *args):
    if Path(path).name == "005.mp4":
        os.kill(os.getpid(), signal.SIGKILL)  # what a decoder crash (PyAV#2344) does to a worker
    return real(path, indices, *args)

datasets.read_frames = crashing  # forked loader workers inherit it
try:
    train(load_config(sys.argv[1]))
except WorkerCrashError as err:
    print(err)
    sys.exit(3)
"""


def test_dead_loader_worker_is_reported_with_its_file(motion_dataset: Path, tmp_path: Path) -> None:
    """A decoder that kills its process takes a loader worker down; the error names the file.
    Runs in a fresh process: forking workers from a process that loaded OpenVINO is not what users do."""
    cfg = _config_file(
        tiny_config_overrides(motion_dataset, tmp_path / "run", **{"data.num_workers": 1}), tmp_path / "c.yaml"
    )
    done = subprocess.run(
        [sys.executable, "-c", _CRASHER, cfg], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "worker died" in done.stdout and "005.mp4" in done.stdout

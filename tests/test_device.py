"""Device choice: the resolution rule (with CUDA faked, so it is tested on a machine without a GPU),
and the same work on every device this machine has (the CPU always, CUDA when visible): a training
run, evaluation, prediction, a stream step and export of a model trained there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config_overrides

from sevnet.device import DeviceError, inference_dtype, resolve_device

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend PyTorch sees ``n`` CUDA GPUs (only the queries resolve_device makes)."""

    def fake(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return fake


def test_auto_takes_the_gpu_of_the_local_rank_and_cpu_is_honoured_where_cuda_exists(fake_gpus) -> None:
    fake_gpus(2)
    assert resolve_device("auto", local_rank=0, world_size=1) == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert resolve_device("cuda:1", local_rank=0, world_size=1) == torch.device("cuda", 1)
    assert resolve_device("cpu", local_rank=1, world_size=2) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_is_the_cpu_without_cuda_and_cuda_is_then_an_error(fake_gpus) -> None:
    fake_gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"train.device=cuda: PyTorch sees no CUDA GPU.*train.device=cpu"):
        resolve_device("cuda")


def test_more_torchrun_processes_than_gpus_names_both_counts(fake_gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for spec in ("auto", "cuda"):
        with pytest.raises(
            DeviceError, match=r"started 2 processes on this node but it has 1 CUDA GPU.*nproc-per-node=1"
        ):
            resolve_device(spec, local_rank=1, world_size=2)


def test_a_gpu_number_past_the_count_or_shared_by_ranks_and_bad_words_are_refused(fake_gpus) -> None:
    fake_gpus(2)
    with pytest.raises(DeviceError, match=r"cuda:2: this machine has 2 CUDA GPU\(s\), numbered 0 to 1"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match=r"names one GPU for all 2 torchrun processes"):
        resolve_device("cuda:0", local_rank=0, world_size=2)
    for bad in ("gpu", "cpu:0", "cuda:x", ""):
        with pytest.raises(DeviceError, match=r"--device=.*expected auto \| cpu \| cuda \| cuda:N"):
            resolve_device(bad, key="--device")


def test_trainer_honours_train_device_cpu_where_cuda_exists(fake_gpus, tmp_path: Path) -> None:
    from test_trainer import Clips, config, linear_model

    from sevnet.engine import Trainer

    fake_gpus(1)
    trainer = Trainer(config(tmp_path, **{"train.device": "cpu"}), model=linear_model(), train_set=Clips(8))
    assert trainer.info.device == torch.device("cpu") and not trainer.loader.pin_memory
    batch = next(iter(trainer.loader))
    assert trainer.train_step(batch) is not None
    assert trainer._setup_line().startswith("training on cpu")


def test_a_bad_train_device_is_refused_before_any_work(tmp_path: Path) -> None:
    from test_trainer import Clips, config, linear_model

    from sevnet.engine import Trainer

    with pytest.raises(DeviceError, match=r"train\.device='tpu'"):
        Trainer(config(tmp_path, **{"train.device": "tpu"}), model=linear_model(), train_set=Clips(8))
    assert not (tmp_path / "config.yaml").exists()


def test_inference_precision_auto_is_float32_on_a_cpu_and_bf16_when_asked() -> None:
    cpu = torch.device("cpu")
    assert inference_dtype("auto", cpu) is None
    assert inference_dtype("float32", cpu) is None
    assert inference_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(DeviceError, match=r"precision='fp8'"):
        inference_dtype("fp8", cpu)


@pytest.fixture(scope="module")
def cpu_run(motion_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal model trained on the CPU (the reference the other devices are compared with)."""
    return _train(motion_dataset, tmp_path_factory.mktemp("dev") / "cpu", "cpu")


def _train(root: Path, out: Path, device: str) -> Path:
    from sevnet.engine import load_config, train

    overrides = tiny_config_overrides(root, out, **{"train.epochs": 2, "train.device": device, "train.amp": "off"})
    i = next(i for i, o in enumerate(overrides) if o.startswith("model.overrides="))
    overrides[i] = overrides[i].replace("head_channels: 64}", "head_channels: 64, causal: true}")
    result = train(load_config(None, overrides))
    assert result.steps > 0 and np.isfinite(result.history[-1]["train_loss"])
    assert next(result.model.parameters()).device.type == device
    return result.checkpoint


@pytest.mark.parametrize("device", DEVICES)
def test_train_evaluate_predict_stream_and_export_on_each_device(
    device: str, cpu_run: Path, motion_dataset: Path, tmp_path: Path
) -> None:
    import sevnet
    from sevnet.deploy.export import export_checkpoint
    from sevnet.engine import evaluate, load_config
    from sevnet.streaming.runners import load_step_runner

    ckpt = cpu_run if device == "cpu" else _train(motion_dataset, tmp_path / "run", device)
    cfg = load_config(ckpt.parent.parent / "config.yaml")
    report = evaluate(cfg, ckpt, tmp_path / "eval", device=device)
    assert 0.0 <= report["top1"] <= 1.0 and report["skipped"] == 0

    video = motion_dataset / "val" / "000.mp4"
    tol = 1e-4 if device == "cpu" else 5e-3  # cuDNN runs float32 convolutions in TF32 by default
    here = sevnet.load(ckpt, device=device, precision="float32")
    assert here.device.type == device and here.uint8_input
    reference = sevnet.load(ckpt)  # float32 on the CPU
    np.testing.assert_allclose(here.scores(video), reference.scores(video), atol=tol)
    frames = np.stack([np.full((32, 32, 3), 40 + 10 * t, np.uint8) for t in range(8)])
    floats = reference.probabilities(reference.preprocess(frames))[0]  # normalised on the CPU, not the device
    np.testing.assert_allclose(here.scores(frames), floats, atol=tol)

    step, _ = load_step_runner(ckpt, device=device)
    cpu_step, _ = load_step_runner(ckpt)
    clip = reference.preprocess(video)[:, :, :3]
    for t in range(clip.shape[2]):
        out, want = step.frame(clip[:, :, t]), cpu_step.frame(clip[:, :, t])
    np.testing.assert_allclose(out, want, atol=1e-4 if device == "cpu" else 5e-2)  # logits: TF32 on a GPU

    exported = export_checkpoint(ckpt, "onnx", tmp_path / "exported" / "model")
    assert exported["onnx_max_rel_error"] < 1e-3

"""Pretrained models by name (model.init_from=NAME, the files in sevnet/weights): found by name before
any path check fails, listed when a name is unknown, and fine-tuned to new classes with every tensor
but the classifier loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_config_overrides

from sevnet.engine import CheckpointError, finetune, load_config, train
from sevnet.engine.checkpoint import read_checkpoint
from sevnet.errors import ConfigError


@pytest.fixture
def shipped(motion_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package weights folder holding ``tiny_prior``: a tiny model trained on motion_dataset."""
    result = train(load_config(None, tiny_config_overrides(motion_dataset, tmp_path / "prior", **{"train.epochs": 1})))
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(result.checkpoint, weights / "tiny_prior.safetensors")
    monkeypatch.setattr(finetune, "PRETRAINED_DIR", weights)
    return weights


def test_a_shipped_model_is_found_by_name_and_an_unknown_name_lists_them(shipped: Path, tmp_path: Path) -> None:
    assert finetune.pretrained_names() == ["tiny_prior"]
    assert finetune.resolve_init_from("tiny_prior") == shipped / "tiny_prior.safetensors"
    local = tmp_path / "tiny_prior"  # a file of that name in the working folder wins: paths first
    local.write_bytes(b"x")
    assert finetune.resolve_init_from(str(local)) == local
    with pytest.raises(CheckpointError, match=r"tiny_priorr: model.init_from: no such file.*those: tiny_prior"):
        finetune.resolve_init_from("tiny_priorr")


def test_fine_tuning_from_a_shipped_model_to_new_classes(
    shipped: Path, motion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "renamed"
    shutil.copytree(motion_dataset, root)
    (root / "classes.txt").write_text("going left\ngoing right\n")
    overrides = tiny_config_overrides(root, tmp_path / "run", **{"train.epochs": 1, "model.init_from": "tiny_prior"})
    capsys.readouterr()
    result = train(load_config(None, overrides))
    out = capsys.readouterr().out
    assert "model.init_from tiny_prior: loaded" in out
    loaded, total = (int(x) for x in out.split("loaded ")[1].split(" tensors")[0].split(" of "))
    assert loaded == total - 2 and "re-initialised 2 (classifier: class names differ)" in out
    assert result.steps > 0


def test_backbone_lr_scale_zero_keeps_the_prior_and_trains_the_classifier(shipped: Path, motion_dataset: Path,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    """optim.backbone_lr_scale: 0 leaves every pretrained parameter as loaded (BN statistics still adapt)
    and trains only the classifier; the classifier is found by its class count."""
    root = tmp_path / "renamed"
    shutil.copytree(motion_dataset, root)
    (root / "classes.txt").write_text("going left\ngoing right\n")
    overrides = tiny_config_overrides(root, tmp_path / "run", **{"train.epochs": 1, "model.init_from": "tiny_prior",
                                                                 "optim.backbone_lr_scale": 0})  # fmt: skip
    result = train(load_config(None, overrides))
    prior, tuned = read_checkpoint(shipped / "tiny_prior.safetensors")[0], read_checkpoint(result.checkpoint)[0]
    params = [k for k in tuned if "running_" not in k and "num_batches" not in k]
    head = {k for k in params if k.startswith(("fc.", "model.fc."))}
    assert head and len(params) > len(head) + 4
    for key in params:
        assert torch.equal(prior[key], tuned[key]) != (key in head), key


def test_backbone_lr_scale_sets_the_backbone_groups_lr() -> None:
    from torch import nn

    from sevnet.engine.config import OptimConfig
    from sevnet.engine.optim import build_optimizer

    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(4, 5))
    head = list(model[3].parameters())
    cfg = OptimConfig(name="adamw", lr=1e-3, base_batch=8, backbone_lr_scale=0.1)
    groups = build_optimizer(model, cfg, global_batch=8, head=head).param_groups
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert all(lrs[id(p)] == pytest.approx(1e-3) for p in head)
    assert all(lrs[id(p)] == pytest.approx(1e-4) for p in list(model[0].parameters()) + list(model[1].parameters()))
    plain = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3, base_batch=8), global_batch=8, head=head)
    assert len(plain.param_groups) == 2  # scale 1: the groups a checkpoint's optimizer state was saved with
    with pytest.raises(ConfigError, match=r"optim\.backbone_lr_scale"):
        OptimConfig(backbone_lr_scale=2)


def test_the_shipped_motion_prior_fits_the_own_videos_model() -> None:
    """motion_prior_xs ships with the package (model.init_from=motion_prior_xs) and fits the own-videos
    config's model: every tensor of folder_sevnet_xs's model but the classifier comes from it, for any classes."""
    from sevnet.models import create_model

    assert "motion_prior_xs" in finetune.pretrained_names()
    cfg = load_config("folder_sevnet_xs", ["data.root=unused"])
    model = create_model(cfg.model.name, num_classes=3, dropout=cfg.model.dropout, **cfg.model.overrides)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = finetune.init_from_checkpoint(model, "motion_prior_xs", ["a", "b", "c"])
    head = finetune.classifier_keys(model, 3)
    assert not report.missing and not report.dropped and set(report.reinitialised) == head and len(head) == 2
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert len(changed) > 100 and not changed & head


def test_a_prior_of_another_architecture_is_an_error_not_a_fresh_start() -> None:
    """A model of other widths (as X3D-XS, which shares no tensor name) fits almost none of the motion
    prior: training it "from the prior" would silently be a from-scratch run, so init_from stops with a
    message that says how to start from scratch."""
    from sevnet.models import create_model

    model = create_model("sevnet_xs", num_classes=3, stages=[[16, 8, 1], [32, 16, 1], [32, 16, 1], [64, 32, 1]],
                         head_channels=64)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"fits \d+ of this model's \d+ tensors.*model.init_from= \(empty\)"):
        finetune.init_from_checkpoint(model, "motion_prior_xs", ["a", "b", "c"])

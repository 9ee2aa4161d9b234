"""Pretrained models by name (model.init_from=NAME, the files in sevnet/weights): found by name before
any path check fails, listed when a name is unknown, and fine-tuned to new classes with every tensor
but the classifier loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import tiny_config_overrides

from sevnet.engine import CheckpointError, finetune, load_config, train


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

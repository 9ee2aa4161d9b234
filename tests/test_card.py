"""ModelCard: the typed model metadata reads every dict sevnet has written and writes today's keys."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _scenes import meta_for, tiny_checkpoint
from _v1_fixture import FIXTURE, write_v1_checkpoint

from sevnet.data.config import INFERENCE_KEYS
from sevnet.deploy.predictor import inference_dataset
from sevnet.deploy.runtime import read_sidecar, write_sidecar
from sevnet.engine import ModelCard, load_model, read_card, read_meta, save_checkpoint
from sevnet.engine.card import _DATA_KEYS, CARD_VERSION, Clip
from sevnet.engine.config import ExperimentConfig, to_container
from sevnet.engine.protocols import TrainingDataset, Uint8ClipDataset
from sevnet.engine.trainer import checkpoint_card, checkpoint_meta
from sevnet.models import create_model


def _trained_meta() -> dict:
    """What a training run's final checkpoint records today (checkpoint_meta + position and metrics)."""
    cfg = ExperimentConfig()
    meta = checkpoint_meta(cfg, SimpleNamespace(num_classes=2, classes=["x", "y"], multi_label=False))
    return {**meta, "epoch": 3, "step": 120, "metrics": {"top1": 0.5}}


def _sidecar_meta() -> dict:
    """What an exported streaming model's sidecar holds today (integrity record and streaming layout)."""
    return {
        **meta_for(),
        "weights_digest": "ab" * 32,
        "source": "run/model.safetensors",
        "quantized": "int8 (NNCF post-training, static)",
        "streaming": {"window": 0, "flat4d": False, "frame_size": [32, 32], "frames_input": {"name": "frames"},
                      "logits_output": {"name": "logits"}, "state": [{"name": "s0", "kind": "conv", "shape": [1, 2]}]},
        "files": {"m.onnx": "00" * 32},
        "class_names_sha256": "11" * 32,
    }  # fmt: skip


@pytest.mark.parametrize(
    "meta",
    [
        meta_for(),
        meta_for(sampling="dense"),
        _trained_meta(),
        _sidecar_meta(),
        {**meta_for(), "clip_seconds": 2.5, "config": None, "metrics": None, "made_by": "a newer sevnet"},
        {"data": {"num_frames": 4, "clip_seconds": 3.0, "max_pixels": 10**6}, "class_names": ["a", "b"]},
        {"model": "sevnet_xs", "num_classes": 2, "class_names": ["a", "b"], "data": "damaged", "streaming": 3},
    ],
    ids=["checkpoint", "dense", "trained", "sidecar", "extras", "partial", "damaged"],
)
def test_round_trip_keeps_every_key(meta: dict) -> None:
    card = ModelCard.from_meta(meta)
    assert card.to_meta() == meta
    assert json.loads(json.dumps(card.to_meta())) == meta  # JSON-serialisable, tuples written as lists
    assert ModelCard.from_meta(card.to_meta()) == card


def test_typed_fields() -> None:
    card = ModelCard.from_meta(_sidecar_meta())
    assert card.version == CARD_VERSION == 2
    assert card.model == "sevnet_xs" and card.num_classes == 3 and card.class_names == ("red", "green", "blue")
    assert card.clip == Clip(num_frames=8, crop=32, scale=32, sampling="segment", frame_stride=2)
    assert card.preprocessing.mean == (0.45,) * 3 and card.preprocessing.input_layout == "NCTHW"
    assert (
        card.streaming is not None and card.streaming.frame_size == (32, 32) and card.streaming.state[0]["name"] == "s0"
    )
    assert card.provenance.weights_digest == "ab" * 32 and card.provenance.quantized.startswith("int8")
    assert card.extra == {"files": {"m.onnx": "00" * 32}, "class_names_sha256": "11" * 32}
    with pytest.raises(FrozenInstanceError):
        card.model = "other"  # type: ignore[misc]


def test_trainer_card_is_todays_meta() -> None:
    """checkpoint_card writes exactly the dict checkpoint_meta wrote before the card existed."""
    cfg = ExperimentConfig()
    dataset = SimpleNamespace(num_classes=2, classes=["x", "y"], multi_label=False)
    data = cfg.data.to_dict()
    assert checkpoint_card(cfg, dataset).to_meta() == {
        "model": cfg.model.name,
        "model_overrides": checkpoint_meta(cfg, dataset)["model_overrides"],
        "num_classes": 2,
        "class_names": ["x", "y"],
        "multi_label": False,
        "data": {k: data[k] for k in INFERENCE_KEYS},
        "config": to_container(cfg),
    }
    assert _DATA_KEYS == INFERENCE_KEYS
    card = checkpoint_card(cfg, dataset)
    assert card.provenance.config_digest == ModelCard.from_meta(card.to_meta()).provenance.config_digest
    assert card.trained(2, 40, {"top1": 1.0}).to_meta() == {**card.to_meta(), "epoch": 2, "step": 40,
                                                            "metrics": {"top1": 1.0}}  # fmt: skip


def test_a_newer_version_is_kept_and_version_2_is_implied() -> None:
    newer = {**meta_for(), "card_version": 3, "colour_space": "rgb"}
    card = ModelCard.from_meta(newer)
    assert card.version == 3 and card.to_meta() == newer
    assert "card_version" not in replace(card, version=CARD_VERSION, omitted=card.omitted | {"card_version"}).to_meta()
    assert "card_version" not in ModelCard(model="sevnet_xs").to_meta()  # files stay readable by older sevnets


def test_format_1_checkpoint_reads_as_a_card(tmp_path: Path) -> None:
    """The format-1 metadata (sevnet 0.1.0) as a dict, and as a file read through the checkpoint."""
    v1_meta = json.loads(json.loads(FIXTURE.read_text())["header"]["meta"])
    card = ModelCard.from_meta(v1_meta, version=1)
    assert card.version == CARD_VERSION
    assert card.model_options["stem_temporal_kernel"] == 1 and card.model_options["zero_init_last"] is True
    assert card.to_meta() == {**v1_meta, "model_overrides": card.model_options}
    assert card.class_names == ("a b", "c", "d") and card.clip.num_frames == 4 and card.clip.crop == 20
    path = tmp_path / "v1.safetensors"
    write_v1_checkpoint(path)
    assert read_card(path) == card
    assert load_model(path)[1] == card.to_meta()


def test_card_of_a_trained_tiny_checkpoint(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path / "m.safetensors", num_frames=4, sampling="dense", crop=32)
    card = read_card(path)
    assert card.class_names == ("red", "green", "blue") and card.num_classes == 3
    assert (card.clip.num_frames, card.clip.crop, card.clip.sampling, card.clip.frame_stride) == (4, 32, "dense", 2)
    assert card.to_meta() == read_meta(path)
    # A checkpoint written from a card loads as the same card (what today's main reads: the same dict).
    model = create_model(card.model, num_classes=card.num_classes, **card.model_options)
    again = save_checkpoint(tmp_path / "again.safetensors", model, card.trained(1, 5).to_meta())
    assert read_card(again) == card.trained(1, 5)


def test_old_sidecar_loads_and_card_sidecar_is_todays(tmp_path: Path) -> None:
    """A sidecar written as before the card (a plain dict) reads back; one written from a card holds the
    same keys, without the training config, and verifies."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx bytes")
    old = {**_trained_meta(), "weights_digest": "cd" * 32, "source": "run/m.safetensors"}
    write_sidecar(model, old)
    from_dict = read_sidecar(model)
    assert "config" not in from_dict and from_dict["class_names"] == ["x", "y"]
    assert {k: v for k, v in from_dict.items() if k not in ("files", "class_names_sha256")} == {
        k: v for k, v in old.items() if k != "config"
    }
    write_sidecar(model, ModelCard.from_meta(old))
    assert read_sidecar(model) == from_dict
    write_sidecar(model, ModelCard.from_meta(from_dict))  # a sidecar's own metadata: its record is rewritten
    assert read_sidecar(model) == from_dict


def test_dataset_protocols() -> None:
    class Plain(torch.utils.data.Dataset):
        classes, multi_label = ["a", "b"], False
        num_classes = 2

        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> dict:
            return {"clip": torch.zeros(3, 2, 4, 4), "label": 0}

    class Uint8(Plain):
        uint8_clips = False
        cfg = SimpleNamespace(mean=[0.5] * 3, std=[0.2] * 3)

    assert isinstance(Plain(), TrainingDataset) and not isinstance(Plain(), Uint8ClipDataset)
    assert isinstance(Uint8(), Uint8ClipDataset)
    video = inference_dataset([], meta_for())  # a VideoDataset: ships uint8 clips when asked
    assert isinstance(video, TrainingDataset) and isinstance(video, Uint8ClipDataset)

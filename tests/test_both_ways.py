"""eval.both_ways: a model trained with data.reverse: auto scores each clip as it is and played backwards
(the backwards scores moved to each class's time-reversed partner), in validation, in ``sevnet eval`` and
in every Predictor, from what the checkpoint records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config_overrides

from sevnet.deploy.predictor import load
from sevnet.engine import CheckpointError, load_config, train
from sevnet.engine.both_ways import both_ways_partners, combine
from sevnet.engine.checkpoint import check_meta, read_card, read_meta
from sevnet.engine.evaluate import evaluate
from sevnet.errors import ConfigError


def test_combine_averages_each_class_with_its_partner_played_backwards() -> None:
    forward = torch.tensor([[0.6, 0.3, 0.1]])
    backward = torch.tensor([[0.2, 0.7, 0.1]])  # played backwards, the clip looks like class 1: class 0's partner
    both = combine(forward, backward, [1, 0, None])
    # class 0: (0.6 + 0.7) / 2; class 1: (0.3 + 0.2) / 2; class 2 has no partner: its forward 0.1
    assert torch.allclose(both, torch.tensor([[0.65, 0.25, 0.1]]))
    assert torch.allclose(combine(forward, backward, [None, None, None]), forward)


def test_both_ways_is_on_only_where_reverse_auto_finds_pairs() -> None:
    names = ["moving up", "moving down", "waving"]
    assert both_ways_partners("auto", "auto", names, False) == [1, 0, None]
    assert both_ways_partners("off", "auto", names, False) is None
    assert both_ways_partners("auto", "off", names, False) is None  # trained without reversal: not taught
    assert both_ways_partners("auto", "auto", names, True) is None  # multi-label: no single partner score
    assert both_ways_partners("auto", "auto", ["cat", "dog"], False) is None
    with pytest.raises(ConfigError, match=r"eval\.both_ways"):
        load_config(None, ["eval.both_ways=yes"])


def test_a_run_with_reversal_validates_evaluates_and_predicts_both_ways(
    motion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = tiny_config_overrides(
        motion_dataset, tmp_path / "run", **{"train.epochs": 1, "data.reverse": "auto", "eval.both_ways": "auto"}
    )
    cfg = load_config(None, overrides)
    capsys.readouterr()
    result = train(cfg)
    assert (
        "eval.both_ways: auto -> validation scores each clip as it is and played backwards" in capsys.readouterr().out
    )
    assert read_card(result.checkpoint).both_ways == (1, 0)  # moving left <-> moving right
    meta = read_meta(result.checkpoint)  # a damaged file's pairs are refused by name, never indexed
    for bad in ([5, 0], [1], "1,0", [1.0, 0]):
        with pytest.raises(CheckpointError, match="'both_ways' must be 2 class indices"):
            check_meta({**meta, "both_ways": bad}, result.checkpoint)
    report = evaluate(cfg, result.checkpoint, tmp_path / "eval")
    predictor = load(result.checkpoint)
    listed = [line.split() for line in (motion_dataset / "val_list.txt").read_text().splitlines()]
    scores = predictor.scores([str(motion_dataset / name) for name, _ in listed])
    predicted_right = [int(row.argmax()) == int(label) for row, (_, label) in zip(scores, listed, strict=True)]
    assert report["views"]["both_ways"] and report["top1"] == pytest.approx(sum(predicted_right) / len(listed))

    clips = torch.from_numpy(predictor.preprocess(str(motion_dataset / "val" / "000.mp4")))
    forward = torch.from_numpy(predictor._one_way(clips))
    backward = torch.from_numpy(predictor._one_way(clips.flip(2)))
    expected = torch.stack([(forward[:, 0] + backward[:, 1]) / 2, (forward[:, 1] + backward[:, 0]) / 2], 1)
    assert torch.allclose(torch.from_numpy(predictor.probabilities(clips)), expected / expected.sum(1, keepdim=True))

    off = load_config(None, [*overrides[:-1], f"train.out_dir={tmp_path / 'off'}"])  # data.reverse=auto only
    card_off = read_card(train(off).checkpoint)
    assert card_off.both_ways is None and "both_ways" not in card_off.to_meta()

"""A schedule that does not depend on the dataset's size: fixed-size epochs (train.epoch_clips) and
validation time kept out of the training budget."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from test_trainer import Clips, config, linear_model

from sevnet.data.loader import EpochSampler
from sevnet.engine import Trainer


def test_a_fixed_size_epoch_draws_every_sample_equally_and_augments_repeats_differently() -> None:
    sampler = EpochSampler(5, shuffle=True, seed=3, epoch_size=12)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 12
    counts = Counter(i for i, _ in keys)
    assert set(counts) == set(range(5)) and set(counts.values()) <= {2, 3}
    assert len(set(keys)) == 12, "a sample drawn twice in an epoch must get another augmentation seed"
    sampler.set_epoch(1)
    assert not set(keys) & set(sampler), "the next epoch draws new seeds"


def test_without_epoch_clips_an_epoch_is_one_pass_keyed_by_the_epoch() -> None:
    sampler = EpochSampler(6, shuffle=True, seed=0)
    sampler.set_epoch(4)
    keys = list(sampler)
    assert sorted(i for i, _ in keys) == list(range(6)) and {d for _, d in keys} == {4}


def test_fixed_size_epochs_are_sharded_without_overlap() -> None:
    ranks = [list(EpochSampler(5, True, seed=1, rank=r, world_size=2, pad=True, epoch_size=11)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 6  # 11 keys padded to 12, 6 per rank
    assert Counter(ranks[0] + ranks[1]).most_common(1)[0][1] <= 2


def test_epoch_clips_sets_the_steps_per_epoch_whatever_the_dataset_size(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"train.epoch_clips": 20, "train.epochs": 2})
    trainer = Trainer(cfg, model=linear_model(), train_set=Clips(8))
    assert trainer.batches_per_epoch == 5  # 20 clips of a set of 8, batch 4
    result = trainer.fit()
    assert result.steps == 10 and [r["step"] for r in result.history] == [5, 10]


class SlowClips(Clips):
    """Validation clips that take ``delay`` seconds each to load."""

    def __init__(self, *args, delay: float = 0.05, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay

    def __getitem__(self, key):
        time.sleep(self.delay)
        return super().__getitem__(key)


def test_validation_time_is_measured_and_kept_out_of_the_budget(tmp_path: Path, capsys) -> None:
    budget_min = 0.01  # 0.6 s of training
    cfg = config(tmp_path, **{"train.max_minutes": budget_min, "train.epochs": 10_000, "eval.every_epochs": 1})
    started = time.perf_counter()
    Trainer(cfg, model=linear_model(), train_set=Clips(16), val_set=SlowClips(8, train=False, seed=1)).fit()
    wall = time.perf_counter() - started
    summary = json.loads((tmp_path / "summary.json").read_text())
    evaluations = sum(1 for row in summary["history"] if "val_top1" in row)
    assert evaluations >= 2 and summary["eval_time_s"] >= 0.9 * evaluations * 8 * 0.05
    assert summary["train_time_s"] >= budget_min * 60, "the budget counts training time only"
    assert summary["train_time_s"] + summary["eval_time_s"] <= wall
    assert "min more (outside the budget)" in capsys.readouterr().out


def test_a_gpu_out_of_memory_names_the_batch_and_what_to_lower(tmp_path: Path) -> None:
    import pytest
    import torch

    from sevnet.engine.trainer import OutOfMemoryError

    class Hungry(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trainer = Trainer(config(tmp_path, **{"train.batch_size": 4}), model=Hungry(), train_set=Clips(8))
    with pytest.raises(
        OutOfMemoryError, match=r"batches of 4 clips .*\(train\.batch_size=2 train\.grad_accum=2 .*--resume"
    ):
        trainer.fit()

"""Mixup / CutMix on the device batch (engine/mixing.py): the arithmetic, the tube, the targets, and a
Trainer that trains with them from a config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_trainer import Clips, batch, config, linear_model

from sevnet.engine import Trainer
from sevnet.engine.config import OptimConfig
from sevnet.engine.mixing import ClipMixer, StillMixer, auto_stillmix_prob
from sevnet.errors import ConfigError


def _clips(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    clip = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, 3, 4, 16, 20).contiguous()
    return clip, torch.tensor([0, 1, 2, 1])[:b]


def test_mixup_blends_each_clip_with_the_reversed_batch_and_its_target_alike() -> None:
    clip, target = _clips()
    mixed, soft = ClipMixer(mixup_alpha=0.4, cutmix_alpha=0.0, num_classes=3, seed=1)(clip, target)
    lam = 1 - mixed[0, 0, 0, 0, 0].item() / 3  # clip 0 (all 0) with clip 3 (all 3)
    assert 0 <= lam <= 1
    assert torch.allclose(mixed, clip * lam + clip.flip(0) * (1 - lam))
    assert torch.allclose(soft.sum(1), torch.ones(4))
    assert soft[0].tolist() == pytest.approx([lam, 1 - lam, 0.0], abs=1e-6)  # class 0 with clip 3's class 1
    assert torch.equal(clip, _clips()[0])  # out of place


def test_cutmix_pastes_one_box_through_every_frame_and_targets_follow_the_area() -> None:
    clip, target = _clips()
    clip = clip.contiguous(memory_format=torch.channels_last_3d)
    for seed in range(20):
        mixed, soft = ClipMixer(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=3, seed=seed)(clip, target)
        pasted = mixed[0] == 3  # clip 0 is all 0; its partner, clip 3, all 3
        assert torch.equal(pasted, pasted[:, :1].expand_as(pasted)), "the box moved between frames"
        kept = 1 - pasted[0, 0].float().mean().item()
        assert soft[0, 0].item() == pytest.approx(kept) and soft[0, 1].item() == pytest.approx(1 - kept)


def test_multi_hot_targets_mix_as_given() -> None:
    clip, _ = _clips()
    multi = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    _, soft = ClipMixer(mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=3, seed=0)(clip, multi)
    # row 0 [1, 0, 1] with its partner row 3 [0, 0, 1]: [lam, 0, 1]
    assert soft[0, 1].item() == 0 and soft[0, 2].item() == pytest.approx(1.0) and 0 <= soft[0, 0].item() <= 1
    assert ((soft >= 0) & (soft <= 1)).all()


def test_negative_alpha_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"optim\.mixup_alpha"):
        OptimConfig(mixup_alpha=-0.2)


@pytest.mark.parametrize("alphas", [{"optim.mixup_alpha": 0.8}, {"optim.mixup_alpha": 0.8, "optim.cutmix_alpha": 1.0}])
def test_trainer_trains_with_mixing_and_keeps_the_true_labels_for_its_accuracy(tmp_path: Path, alphas: dict) -> None:
    data = Clips(16, num_classes=3)
    t = Trainer(config(tmp_path, **alphas), model=linear_model(3), train_set=data)
    assert t.mixer is not None
    before = [p.detach().clone() for p in t.model.parameters()]
    for i in range(0, 16, 4):
        loss = t.train_step(batch(data.x[i : i + 4], data.y[i : i + 4]))
        assert loss is not None and loss == loss
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    assert Trainer(config(tmp_path / "plain"), model=linear_model(3), train_set=data).mixer is None


def test_stillmix_blends_a_chosen_clip_with_one_frame_of_another_clip_through_time() -> None:
    b, t = 4, 5
    # clip i, frame f holds 10 * i + f everywhere: a blend names its partner and its frame
    clip = (10 * torch.arange(b).view(b, 1, 1, 1, 1) + torch.arange(t).view(1, 1, t, 1, 1)).float()
    clip = clip.expand(b, 3, t, 6, 6).contiguous(memory_format=torch.channels_last_3d)
    for seed in range(10):
        mixed = StillMixer(prob=1.0, max_weight=0.5, seed=seed)(clip)
        assert mixed.is_contiguous(memory_format=torch.channels_last_3d)
        for i in range(b):
            values = mixed[i, 0, :, 0, 0]  # (1 - w) * (10 i + f) + w * still: slope 1 - w in f
            w = 1 - (values[1] - values[0]).item()
            assert -1e-5 <= w <= 0.5
            if w > 1e-3:
                still = ((values[0] - (1 - w) * 10 * i) / w).item()
                partner, frame = divmod(round(still), 10)
                assert partner != i and 0 <= frame < t and abs(still - round(still)) < 1e-2


def test_stillmix_prob_picks_that_share_of_clips_and_keeps_labels() -> None:
    clip = torch.randn(64, 3, 4, 8, 8)
    mixed = StillMixer(prob=0.25, seed=0)(clip)
    changed = (mixed != clip).flatten(1).any(1).float().mean().item()
    assert 0.1 < changed < 0.4
    assert torch.equal(StillMixer(prob=1.0, seed=0)(clip[:1]), clip[:1])  # a batch of one has no other clip
    for bad in (1.5, "often"):
        with pytest.raises(ConfigError, match=r"optim\.stillmix_prob must be a number in \[0, 1\] or auto"):
            OptimConfig(stillmix_prob=bad)


def test_stillmix_auto_is_on_only_with_few_videos_per_class(tmp_path: Path) -> None:
    assert auto_stillmix_prob(videos=12 * 20, classes=12) == 0.5 and auto_stillmix_prob(12 * 21, 12) == 0.0
    few = Trainer(config(tmp_path / "few", **{"optim.stillmix_prob": "auto"}), model=linear_model(3),
                  train_set=Clips(30, num_classes=3))  # fmt: skip
    assert few.still_mixer is not None and few.still_mixer.prob == 0.5
    many = Trainer(config(tmp_path / "many", **{"optim.stillmix_prob": "auto"}), model=linear_model(3),
                   train_set=Clips(63, num_classes=3))  # fmt: skip
    assert many.still_mixer is None


def test_trainer_trains_with_stillmix(tmp_path: Path) -> None:
    data = Clips(16, num_classes=3)
    t = Trainer(config(tmp_path, **{"optim.stillmix_prob": 0.5}), model=linear_model(3), train_set=data)
    assert t.still_mixer is not None and t.mixer is None
    loss = t.train_step(batch(data.x[:4], data.y[:4]))
    assert loss is not None and loss == loss

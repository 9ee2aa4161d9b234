"""Feeding a fast model: ``data.repeats`` (one decode, k augmented clips, batches of train.batch_size
clips) and the decoder thread rule (no worker's decoder takes every core), on real encoded videos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _videos import write_video
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sevnet.data import DataConfig, SkipCounter, build_dataset, build_loader
from sevnet.data import datasets as datasets_module
from sevnet.engine import Trainer
from sevnet.engine.config import EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from sevnet.errors import ConfigError
from sevnet.video import decoder_threads, thread_count

SMALL = {"num_frames": 4, "train_scale": [32, 48], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<class>/: 4 videos of each of 2 classes, 24 frames of 64x96."""
    root = tmp_path_factory.mktemp("feed")
    for cls in ("left", "right"):
        for i in range(4):
            write_video(root / "train" / cls / f"v{i}.mp4", num_frames=24, size=(64, 96))
        write_video(root / "val" / cls / "v.mp4", num_frames=24, size=(64, 96))
    return root


def data_cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(format="folder", root=str(root), num_workers=0, **{**SMALL, **kw})


def test_repeats_give_k_differently_augmented_clips_from_one_decode(videos: Path, monkeypatch) -> None:
    ds = build_dataset(data_cfg(videos, repeats=4, flip="on"), "train", train=True)
    calls = []
    real = datasets_module.read_frames
    monkeypatch.setattr(datasets_module, "read_frames", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    item = ds[(3, 0)]
    assert len(calls) == 1  # one decode of the union of the clips' frames
    clips, target = item["clip"], item["target"]
    assert clips.shape == (4, 3, 4, 32, 32) and target.tolist() == [ds.samples[3].target] * 4
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.equal(clips[a], clips[b])  # each its own frames, scale, crop and flip
    again = ds[(3, 0)]
    assert torch.equal(again["clip"], clips)  # seeded per (seed, epoch, index) as before


def test_repeats_1_is_the_plain_item_and_evaluation_ignores_repeats(videos: Path) -> None:
    plain = build_dataset(data_cfg(videos), "train", train=True)
    one = build_dataset(data_cfg(videos, repeats=1), "train", train=True)
    assert torch.equal(plain[(2, 1)]["clip"], one[(2, 1)]["clip"]) and one[(2, 1)]["clip"].shape == (3, 4, 32, 32)
    val = build_dataset(data_cfg(videos, repeats=4), "val", train=False)
    assert val.repeats == 1 and val[0]["clip"].shape == (1, 3, 4, 32, 32)
    loader = build_loader(val, 2, train=False, cfg_data=val.cfg, num_workers=0)
    assert loader.batch_size == 2 and len(next(iter(loader))["clip"]) == 2


def test_loader_reads_batch_over_repeats_videos_and_flattens_their_clips(videos: Path) -> None:
    cfg = data_cfg(videos, repeats=2)
    ds = build_dataset(cfg, "train", train=True)
    loader = build_loader(ds, 4, train=True, cfg_data=cfg, num_workers=0)
    assert loader.batch_size == 2 and len(loader) == len(ds) // 2  # an epoch reads each video once
    batch = next(iter(loader))
    assert batch["clip"].shape == (4, 3, 4, 32, 32) and batch["clip"].dtype == torch.float32
    index, target = batch["index"].tolist(), batch["target"].tolist()
    assert index[0] == index[1] != index[2] == index[3]  # a video's clips side by side
    assert target[0] == target[1] and target[2] == target[3]
    with pytest.raises(ConfigError, match=r"train.batch_size \(6\) must be a multiple of data.repeats \(4\)"):
        build_loader(build_dataset(data_cfg(videos, repeats=4), "train", train=True), 6, True, cfg, num_workers=0)
    with pytest.raises(ConfigError, match=r"data\.repeats must be a positive int"):
        data_cfg(videos, repeats=0)


def test_repeats_auto_takes_4_clips_per_video_only_when_videos_are_few(videos: Path) -> None:
    from sevnet.data.datasets import auto_repeats

    few = build_dataset(data_cfg(videos, repeats="auto"), "train", train=True)
    assert few.repeats == 4 and few[(0, 0)]["clip"].shape[0] == 4  # 4 videos per class
    assert build_dataset(data_cfg(videos, repeats="auto"), "val", train=False).repeats == 1
    assert auto_repeats(videos=12 * 10, classes=12) == 4 and auto_repeats(videos=12 * 11, classes=12) == 1


@pytest.mark.parametrize("repeats", [1, 2])
def test_uint8_training_batches_arrive_channels_last_from_a_worker(videos: Path, repeats: int) -> None:
    """The training crop's bytes stay (T, H, W, 3) from the resize to the model: items and a real
    worker's batches are channels-last (no transpose in the worker, none in the Trainer), with the
    values a plain stack of the items gives."""
    from sevnet.data.transforms import flip_width, is_channels_last, stack_clips

    cfg = data_cfg(videos, repeats=repeats)
    ds = build_dataset(cfg, "train", train=True)
    ds.uint8_clips = True
    items = [ds[(i, 0)]["clip"] for i in range(4)]
    assert all(is_channels_last(c) for c in items)
    loader = build_loader(ds, 4 * repeats, train=True, cfg_data=cfg, num_workers=1)
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    clips, videos = batch["clip"], batch["index"][::repeats].tolist()
    assert clips.dtype == torch.uint8 and clips.is_contiguous(memory_format=torch.channels_last_3d)
    want = torch.cat([ds[(i, 0)]["clip"].contiguous().view(-1, 3, 4, 32, 32) for i in videos])
    assert torch.equal(clips, want)
    assert torch.equal(stack_clips(items), torch.stack([c.contiguous() for c in items]))
    shared = stack_clips(items, shared=True)
    assert shared.is_shared() and is_channels_last(shared) and torch.equal(shared, stack_clips(items))
    flipped = flip_width(items[0])  # data.flip: auto's mirror keeps the layout
    assert is_channels_last(flipped) and torch.equal(flipped, items[0].flip(-1))
    floats = [torch.rand(3, 4, 8, 8) for _ in range(2)]  # contiguous clips: a plain stack
    assert stack_clips(floats).is_contiguous() and torch.equal(stack_clips(floats), torch.stack(floats))


def test_skipped_videos_are_counted_against_videos_not_clips(videos: Path, tmp_path: Path) -> None:
    """data.max_skip_fraction is a share of videos: with repeats 2 a bad file is 1 of the 8 videos read."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(videos, root)
    (root / "train" / "right" / "v3.mp4").unlink()
    (root / "train" / "left" / "broken.mp4").write_text("not a video\n" * 10)
    cfg = data_cfg(root, repeats=2)
    loader = build_loader(build_dataset(cfg, "train", train=True), 4, train=True, cfg_data=cfg, num_workers=0)
    counter = SkipCounter(max_fraction=0.5, min_seen=1)
    for batch in loader:
        counter.update(batch)
    assert counter.num_skipped == 1 and counter.seen == 8  # 4 batches of 2 videos, one of them bad
    assert counter.skipped[0][0].endswith("broken.mp4")


def test_training_with_repeats_takes_steps_of_batch_size_clips(videos: Path, tmp_path: Path) -> None:
    """8 videos, repeats 2, batch 4 clips: 4 steps an epoch of 4 clips each, the lr scaled for 4 clips
    a step (base_batch 4: lr as given), and a mid-epoch resume skips videos, not clips."""
    data = data_cfg(videos, repeats=2)
    cfg = ExperimentConfig(
        data=data,
        optim=OptimConfig(base_batch=4, lr=0.1, warmup_epochs=0),
        train=TrainConfig(out_dir=str(tmp_path / "a"), progress=False, batch_size=4, epochs=1, amp="off"),
        eval=EvalConfig(batch_size=2),
    )
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 32 * 32, 2))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(cfg, model=model, train_set=build_dataset(data, "train", True), val_set=None)
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.1)
    trainer.fit()
    assert trainer.state.step == 4 and trainer.state.clips_seen == 16
    assert any(not torch.equal(a, b.detach().cpu()) for a, b in zip(before, model.parameters()))
    cfg = replace(cfg, train=replace(cfg.train, out_dir=str(tmp_path / "b")))
    resumed = Trainer(cfg, model=model, train_set=build_dataset(data, "train", True), val_set=None)
    resumed.state.batch = 3  # resumed after 3 of the epoch's 4 batches: one batch (2 videos) is left
    resumed.train_epoch()
    assert resumed.state.step == 1 and resumed.state.clips_seen == 4


def test_a_videos_frame_count_is_probed_once_per_dataset(videos: Path, monkeypatch) -> None:
    """Workers persist across epochs: the demux that counts a video's frames runs on its first read only."""
    ds = build_dataset(data_cfg(videos), "train", train=True)
    calls = []
    real = datasets_module.probe_video
    monkeypatch.setattr(datasets_module, "probe_video", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    first = [ds[(i, 0)]["clip"] for i in range(len(ds))]
    again = [ds[(i, 1)]["clip"] for i in range(len(ds))]
    assert len(calls) == len(ds) == len(set(calls)) and len(first) == len(again)


# --- decoder threads ---------------------------------------------------------------------------------
def test_decoder_threads_share_the_cores_between_workers() -> None:
    assert decoder_threads(workers=2, cores=2) == 1
    assert decoder_threads(workers=8, cores=16) == 2
    assert decoder_threads(workers=15, cores=16) == 1
    assert decoder_threads(workers=3, cores=2) == 1  # never 0
    assert decoder_threads(workers=0, cores=4) == 4  # decoding in the main process: alone
    assert decoder_threads(workers=1, cores=16) == 16


class _Threads(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return thread_count()


def test_each_loader_worker_decodes_with_its_share_of_the_cores() -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    seen = [int(x) for b in DataLoader(_Threads(), batch_size=2, num_workers=2) for x in b]
    assert seen == [decoder_threads(2, cores)] * 4
    assert thread_count() == cores  # the main process decodes alone


@pytest.mark.parametrize("cache", ["off", "memory"])
def test_reverse_auto_plays_clips_backwards_as_the_partner_class(videos: Path, cache: str) -> None:
    """data.reverse: auto: about half the clips come reversed in time with the partner's label ("left" <->
    "right" are each other's reversal), the rest as they were; the crop is the same either way, from the
    files or the frame cache; with data.repeats each clip draws for itself; evaluation never reverses."""
    off = build_dataset(data_cfg(videos, cache=cache), "train", train=True)
    on = build_dataset(data_cfg(videos, reverse="auto", cache=cache), "train", train=True)
    assert on.reversal == [1, 0] and off.reversal is None
    reversed_count = 0
    for i in range(len(on)):
        a, b = off[(i, 0)], on[(i, 0)]
        if int(b["target"]) == int(a["target"]):
            assert torch.equal(b["clip"], a["clip"])
        else:
            assert int(b["target"]) == 1 - int(a["target"]) and not torch.equal(b["clip"], a["clip"])
            assert torch.equal(b["clip"], a["clip"].flip(1))  # (3, T, H, W): the frames in reverse order
            reversed_count += 1
    assert 0 < reversed_count < len(on)
    many = build_dataset(data_cfg(videos, reverse="auto", repeats=4), "train", train=True)
    targets = torch.cat([many[(i, 0)]["target"] for i in range(len(many))])
    own = torch.tensor([s.target for s in many.samples]).repeat_interleave(4)
    assert 0 < int((targets != own).sum()) < len(targets)
    assert build_dataset(data_cfg(videos, reverse="auto"), "val", train=False).reversal is None


def test_reversal_pairs_are_read_from_the_class_names() -> None:
    from sevnet.data.reversal import describe, reversal_labels

    names = [
        "Pushing something from left to right", "Pushing something from right to left",  # a subset swapped
        "Putting something into something", "Taking something out of something",  # two words at once
        "Moving something closer to the camera", "Moving something away from the camera",
        "covering", "uncovering", "Something appearing", "Something disappearing",  # prefixes
        "going out of focus", "coming into focus", "fading to black", "fading from black",
        "Drinking", "Moving something up", "Lifting something up", "Lifting something down", "Lowering something down",
    ]  # fmt: skip
    labels = reversal_labels(names)
    assert labels[:14] == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12]
    assert labels[14] is None  # no partner: never played backwards
    assert labels[15] is None  # "Moving something down" is not a class
    assert labels[16:18] == [17, 16] and labels[18] is None
    assert "Drinking" not in describe(names, labels) and "(3 other classes never)" in describe(names, labels)
    assert reversal_labels(["a up b down", "a down b up", "a up b up"]) == [None] * 3  # two candidates each
    assert reversal_labels(["x up", "x down", "y up"]) == [1, 0, None]
    assert reversal_labels(["light on", "light off"]) == [None, None]  # states: the same played backwards
    with pytest.raises(ConfigError, match=r"data\.reverse"):
        DataConfig(reverse="on")


def test_with_few_videos_the_log_suggests_reverse_auto_only_for_paired_names() -> None:
    from sevnet.data.reversal import suggestion

    paired = ["moving up", "moving down", "waving"]
    hint = suggestion(paired, 5)
    assert hint and "data.reverse=auto" in hint and "moving up <-> moving down" in hint and "thumb up" in hint
    assert suggestion(paired, 60) is None  # enough videos: no hint
    assert suggestion(["waving", "clapping"], 5) is None  # no pair to swap


def test_the_training_log_carries_the_reverse_hint_and_the_repeats_chosen(videos: Path, tmp_path: Path, capsys) -> None:
    """4 videos of "left" and of "right" with data.reverse off: the trainer says what auto would do (and
    what data.repeats: auto and optim.stillmix_prob: auto chose)."""
    data = data_cfg(videos, repeats="auto")
    cfg = ExperimentConfig(data=data, train=TrainConfig(out_dir=str(tmp_path), progress=False, batch_size=4),
                           optim=OptimConfig(stillmix_prob="auto"))  # fmt: skip
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 32 * 32, 2))
    Trainer(cfg, model=model, train_set=build_dataset(data, "train", True), val_set=None)
    out = capsys.readouterr().out
    assert "With 4 videos per class, data.reverse=auto would also train" in out
    assert "data.repeats: auto -> 4 clips per decoded video (4 training videos per class" in out
    assert "optim.stillmix_prob: auto -> 0.5 of the clips (4 training videos per class" in out
    assert "rather than by how it moves: train from scratch without StillMix (model.init_from= data.repeats=1" in out


def test_generated_data_takes_the_reverse_hint_and_then_pairs_every_class(tmp_path: Path, capsys) -> None:
    """The built-in benchmark (the demo's data) names its classes in pairs and has few clips per class
    here: data.reverse applies to it, so the log suggests it; with it on, every class is paired with its
    exact reversal (the generator plays each pair's process backwards)."""
    from sevnet.data.config import DataConfig

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 32 * 32, 12))
    for reverse in ("off", "auto"):
        data = DataConfig(format="synthetic", num_frames=4, reverse=reverse,
                          synthetic={"num_train": 48, "num_val": 12, "size": 32})  # fmt: skip
        cfg = ExperimentConfig(data=data, train=TrainConfig(out_dir=str(tmp_path), progress=False, batch_size=4))
        train_set = build_dataset(data, "train", True)
        Trainer(cfg, model=model, train_set=train_set, val_set=None)
        out = capsys.readouterr().out
        if reverse == "off":
            assert "reverse: off. With 4 videos per class, data.reverse=auto would" in out
        else:
            assert train_set.reversal == [label ^ 1 for label in range(12)]
            assert "Moving something up <-> Moving something down" in out

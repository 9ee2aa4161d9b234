"""data.flip: auto on real encoded videos: a flipped clip takes its mirror class's label, a named
direction without its mirror class is never flipped, and classes without direction words flip freely."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _videos import write_video

from sevnet.data import DataConfig, build_dataset
from sevnet.data.mirror import describe, mirror_labels
from sevnet.errors import ConfigError


def test_mirror_labels_from_names() -> None:
    names = [
        "Pushing something from left to right",  # 0 <-> 1 (SSv2)
        "Pushing something from right to left",
        "turning clockwise",  # 2 <-> 3, however "counter-clockwise" is written
        "Turning_Counter Clockwise",
        "spinning anticlockwise",  # 4: its mirror class "spinning clockwise" does not exist
        "waving",  # 5: no direction word
        "copyright notice",  # 6: "right" inside a word is not a direction
    ]
    assert mirror_labels(names) == [1, 0, 3, 2, None, 5, 6]
    line = describe(names, mirror_labels(names))
    assert "turning clockwise <-> Turning_Counter Clockwise" in line and "never flipped" in line
    assert "2 classes keep their label" in line


CLASSES = ["moving left", "moving right", "turning left", "waving"]  # "turning left" has no mirror class


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    for split in ("train", "val"):
        for name in CLASSES:
            for i in range(2):
                write_video(root / split / name / f"{i}.webm", num_frames=8, size=(32, 40))
    return root


def dataset(root: Path, flip: str):
    cfg = DataConfig(format="folder", root=str(root), num_frames=4, train_scale=[32, 36], train_crop=32,
                     eval_scale=32, eval_crop=32, flip=flip, num_workers=0)  # fmt: skip
    return build_dataset(cfg, "train", train=True)


def test_flip_auto_swaps_mirror_labels_and_flips_the_clip(tree: Path) -> None:
    auto, off = dataset(tree, "auto"), dataset(tree, "off")
    assert auto.mirror == [1, 0, None, 3]
    seen: dict[int, set[int]] = {i: set() for i in range(len(CLASSES))}
    for epoch in range(6):
        for index in range(len(auto)):
            a, o = auto[(index, epoch)], off[(index, epoch)]  # same seed: same frames and crop
            label = int(o["target"])
            seen[label].add(int(a["target"]))
            if int(a["target"]) != label or not torch.equal(a["clip"], o["clip"]):
                assert torch.equal(a["clip"], o["clip"].flip(-1)), "a changed item must be the flipped clip"
                assert int(a["target"]) == [1, 0, None, 3][label]
    assert seen[0] == {0, 1} and seen[1] == {0, 1}  # left/right clips flipped into each other
    assert seen[2] == {2}  # turning left: never flipped (the clip too, checked above)
    assert seen[3] == {3}


def test_flip_auto_is_off_for_unnamed_classes_and_eval(tree: Path, tmp_path: Path) -> None:
    assert build_dataset(DataConfig(format="folder", root=str(tree), flip="auto", num_workers=0), "val",
                         train=False).mirror is None  # fmt: skip
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.webm", num_frames=8, size=(32, 40))
    (tmp_path / "train_list.txt").write_text("a.webm 0\nb.webm 1\n")
    cfg = DataConfig(format="video_list", root=str(tmp_path), num_classes=2, flip="auto", num_workers=0)
    assert build_dataset(cfg, "train", train=True).mirror is None  # labels 0, 1: nothing to read
    with pytest.raises(ConfigError, match="auto"):
        DataConfig(flip="sometimes")


def test_vertical_mirror_labels_swap_up_and_down_and_turns_but_not_left_and_right() -> None:
    names = ["tilting up", "tilting down", "moving left", "rotating clockwise", "rotating counter-clockwise",
             "picking something up", "zooming in"]  # fmt: skip
    assert mirror_labels(names, axis="height") == [1, 0, 2, 4, 3, None, 6]
    line = describe(names, mirror_labels(names, axis="height"), "vflip")
    assert line.startswith("vflip: 2 classes keep their label") and "never flipped" in line


VERTICAL = ["lifting up", "moving down", "moving up", "waving"]  # sorted; "lifting up" has no upside-down partner


@pytest.fixture(scope="module")
def vertical_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vertical")
    for name in VERTICAL:
        for i in range(2):
            write_video(root / "train" / name / f"{i}.webm", num_frames=8, size=(32, 40))
    return root


def test_vflip_auto_turns_clips_upside_down_with_the_partner_label(vertical_tree: Path) -> None:
    for repeats in (1, 2):
        cfg = dict(format="folder", root=str(vertical_tree), num_frames=4, train_scale=[32, 36], train_crop=32,
                   repeats=repeats, num_workers=0)  # fmt: skip
        auto = build_dataset(DataConfig(**cfg, vflip="auto"), "train", train=True)
        off = build_dataset(DataConfig(**cfg), "train", train=True)
        assert auto.vertical_mirror == [None, 2, 1, 3] and off.vertical_mirror is None
        seen: dict[int, set[int]] = {i: set() for i in range(len(VERTICAL))}
        for epoch in range(6):
            for index in range(len(auto)):
                a, o = auto[(index, epoch)], off[(index, epoch)]  # same seed: same frames and crop
                for clip, target, ref, label in zip(a["clip"].view(-1, *a["clip"].shape[-4:]), a["target"].view(-1),
                                                    o["clip"].view(-1, *o["clip"].shape[-4:]), o["target"].view(-1)):  # fmt: skip
                    seen[int(label)].add(int(target))
                    if int(target) != int(label) or not torch.equal(clip, ref):
                        assert torch.equal(clip, ref.flip(-2)), "a changed clip must be the upside-down one"
                        assert int(target) == [None, 2, 1, 3][int(label)]
        assert seen[0] == {0} and seen[1] == {1, 2} and seen[2] == {1, 2} and seen[3] == {3}
    on = build_dataset(DataConfig(**cfg, vflip="on"), "train", train=True)
    assert on.vertical_mirror == [0, 1, 2, 3]  # on: every class keeps its label
    assert build_dataset(DataConfig(**cfg, vflip="auto"), "train", train=False).vertical_mirror is None


def test_the_training_log_suggests_vflip_with_few_videos_and_then_says_what_it_swaps(
    vertical_tree: Path, tmp_path: Path, capsys
) -> None:
    from torch import nn

    from sevnet.engine.config import ExperimentConfig, TrainConfig
    from sevnet.engine.trainer import Trainer

    for vflip in ("off", "auto"):
        data = DataConfig(format="folder", root=str(vertical_tree), num_frames=4, train_scale=[32, 36], train_crop=32,
                          vflip=vflip, num_workers=0)  # fmt: skip
        cfg = ExperimentConfig(
            data=data, train=TrainConfig(out_dir=str(tmp_path / vflip), progress=False, batch_size=4)
        )
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 32 * 32, 4))
        Trainer(cfg, model=model, train_set=build_dataset(data, "train", True), val_set=None)
        out = capsys.readouterr().out
        if vflip == "off":
            assert "videos per class, data.vflip=auto would also train clips upside down, swapping moving down <-> " \
                   "moving up" in out  # fmt: skip
        else:
            assert "vflip: 1 class keeps its label, swapped: moving down <-> moving up, never flipped" in out
            assert "data.vflip=auto would" not in out

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

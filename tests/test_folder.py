"""format folder on real encoded videos: both layouts, the seeded stratified split and its file,
stray files, class-name labels in the generic lists, and data.exclude_list."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from _videos import decode_index, pattern_frame, write_frame_folder, write_video
from PIL import Image

from sevnet.data import AnnotationError, DataConfig, build_dataset
from sevnet.data.annotations import parse_annotation
from sevnet.data.folder import freeze_split, list_frame_images, natural_key, read_sorted_frames

SMALL = {"num_frames": 4, "train_scale": [32, 40], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}
CLASSES = ["café crème", "riding a bike", "zebra"]  # sorted by code point; spaces and non-ASCII


def cfg(root: Path, fmt: str = "folder", **kw) -> DataConfig:
    return DataConfig(format=fmt, root=str(root), **{"num_workers": 0, **SMALL, **kw})


def rels(ds) -> list[str]:
    root = Path(ds.cfg.root)
    return sorted(s.path.relative_to(root).as_posix() for s in ds.samples)


def write_png_frames(folder: Path, num: int) -> Path:
    """Frames named frame_1.png ... frame_<num>.png: not the default template, unpadded numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num):
        Image.fromarray(pattern_frame(i)).save(folder / f"frame_{i + 1}.png")
    return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<class>/: 5 videos per class (mixed containers, an upper-case extension), a frame
    folder, and stray files: notes, a hidden file, an empty folder, a README at the root."""
    root = tmp_path_factory.mktemp("folder")
    for name in CLASSES:
        for i in range(5):
            suffix = (".mp4", ".webm", ".mkv")[i % 3]
            write_video(root / name / f"clip {i}{suffix}", num_frames=6)
        (root / name / "notes.txt").write_text("shot on a phone")
        (root / name / ".DS_Store").write_bytes(b"\0")
    (root / CLASSES[0] / "clip 1.webm").rename(root / CLASSES[0] / "clip 1.WEBM")
    write_png_frames(root / CLASSES[1] / "frames a", 12)
    (root / CLASSES[2] / "empty").mkdir()
    (root / "README.md").write_text("my videos")
    return root


# --- root/<class>/... -------------------------------------------------------------------------------
def test_class_folders_stratified_split(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        train = build_dataset(cfg(tree), "train", train=True)
        val = build_dataset(cfg(tree), "val", train=False)
    assert train.classes == CLASSES and val.classes == CLASSES
    # 5, 6 and 5 samples per class; val_fraction 0.2: one each in val
    assert len(train) + len(val) == 16 and len(val) == 3
    assert sorted(s.target for s in val.samples) == [0, 1, 2]
    assert not set(rels(train)) & set(rels(val))
    assert "café crème/clip 1.WEBM" in rels(train) + rels(val)
    assert train[0]["clip"].shape == (3, 4, 32, 32) and val[0]["clip"].shape == (1, 3, 4, 32, 32)
    frames = next(s for s in train.samples + val.samples if s.frames)
    assert frames.path.name == "frames a" and frames.num_frames == 12
    # stray files: 3 notes + 3 hidden + an empty folder + README = 8, reported once for both splits
    ann = parse_annotation(cfg(tree), "train")
    assert len(ann.ignored) == 8 and "README.md" in ann.ignored and "zebra/empty/" in ann.ignored
    reports = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(reports) == 1 and "ignored 8 files that are not videos" in reports[0]


def test_split_is_deterministic_and_seeded(tree: Path) -> None:
    first = rels(build_dataset(cfg(tree), "val", train=False))
    assert rels(build_dataset(cfg(tree), "val", train=False)) == first
    others = {tuple(rels(build_dataset(cfg(tree, split_seed=s), "val", train=False))) for s in range(1, 6)}
    assert len(others | {tuple(first)}) > 1
    assert rels(build_dataset(cfg(tree, seed=3), "val", train=False)) == rels(
        build_dataset(cfg(tree, split_seed=3), "val", train=False)
    )  # split_seed defaults to data.seed
    big = build_dataset(cfg(tree, val_fraction=0.5), "val", train=False)
    assert len(big) == 7  # per class round(n * 0.5): 2 of 5 (round half to even), 3 of 6, 2 of 5
    with pytest.raises(ValueError, match="val_fraction"):
        build_dataset(cfg(tree, val_fraction=1.0), "train", train=True)


def test_freeze_split_writes_and_reuses(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(tree, root)
    frozen = freeze_split(cfg(root), tmp_path / "run")
    split_csv = tmp_path / "run" / "split.csv"
    assert frozen.split_file == str(split_csv.resolve()) and split_csv.is_file()
    header, *rows = split_csv.read_text(encoding="utf-8").splitlines()
    assert header == "path,class,split" and len(rows) == 16 and any("café crème" in r for r in rows)
    before = {s: rels(build_dataset(cfg(root), s, train=False)) for s in ("train", "val")}
    assert {s: rels(build_dataset(frozen, s, train=False)) for s in ("train", "val")} == before
    # the tree changes: a new video is not used, a deleted one is reported missing; the split holds
    write_video(root / "zebra" / "new.mp4", num_frames=6)
    gone = root / before["val"][0]
    shutil.rmtree(gone) if gone.is_dir() else gone.unlink()
    val = build_dataset(frozen, "val", train=False)
    assert rels(val) == before["val"][1:] and val.missing == [str(gone)]
    assert rels(build_dataset(frozen, "train", train=False)) == before["train"]
    # a resumed run keeps its split.csv; a fresh one writes the current split
    stamp = split_csv.stat().st_mtime_ns
    assert freeze_split(cfg(root), tmp_path / "run", reuse=True).split_file == frozen.split_file
    assert split_csv.stat().st_mtime_ns == stamp
    freeze_split(cfg(root), tmp_path / "run")
    assert "zebra/new.mp4" in split_csv.read_text(encoding="utf-8")
    # no-ops: another format, split folders, a split file already set
    assert freeze_split(cfg(root, "video_list"), tmp_path / "x").split_file is None
    assert freeze_split(frozen, tmp_path / "y").split_file == frozen.split_file
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_split_file_json_and_errors(tree: Path, tmp_path: Path) -> None:
    entries = [{"path": "zebra/clip 0.mp4", "class": "zebra", "split": "train"},
               {"path": "riding a bike/frames a", "class": "riding a bike", "split": "validation"},
               {"path": "café crème/clip 0.mp4", "class": "café crème", "split": "test"}]  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps(entries))
    c = cfg(tree, split_file=str(tmp_path / "split.json"))
    val = build_dataset(c, "val", train=False)
    assert val.classes == CLASSES and [s.target for s in val.samples] == [1] and val.samples[0].frames
    assert val.samples[0].num_frames == 12 and len(build_dataset(c, "test", train=False)) == 1
    (tmp_path / "bad.csv").write_text("path,class,split\nzebra/clip 0.mp4,zebra,train\nzebra/clip 1.webm,zebra,dev\n")
    with pytest.raises(AnnotationError, match=r"bad.csv:3: split 'dev' is not train, val or test"):
        build_dataset(cfg(tree, split_file=str(tmp_path / "bad.csv")), "train", train=True)
    (tmp_path / "nohead.csv").write_text("zebra/clip 0.mp4,zebra,train\n")
    with pytest.raises(AnnotationError, match=r"nohead.csv:1: header must name path, class and split"):
        build_dataset(cfg(tree, split_file=str(tmp_path / "nohead.csv")), "train", train=True)
    with pytest.raises(FileNotFoundError, match=r"data\.split_file not found"):
        build_dataset(cfg(tree, split_file="nope.csv"), "train", train=True)
    with pytest.raises(ValueError, match="split_file is read by format 'folder' only"):
        build_dataset(cfg(tree, "video_list", split_file="x.csv", num_classes=2), "train", train=True)


# --- root/{train,val,test}/<class>/... -------------------------------------------------------------
def test_split_folders(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        for name in ("b ünïcode", "a class"):
            for i in range(n):
                write_video(tmp_path / split / name / f"{i}.mp4", num_frames=5)
    (tmp_path / "labels.txt").write_text("stray")
    train = build_dataset(cfg(tmp_path), "train", train=True)
    assert train.classes == ["a class", "b ünïcode"] and len(train) == 6
    val = build_dataset(cfg(tmp_path), "validation", train=False)
    assert rels(val) == ["val/a class/0.mp4", "val/b ünïcode/0.mp4"] and [s.target for s in val.samples] == [0, 1]
    assert len(build_dataset(cfg(tmp_path), "test", train=False)) == 2
    assert "labels.txt" in parse_annotation(cfg(tmp_path), "train").ignored
    assert freeze_split(cfg(tmp_path), tmp_path / "run").split_file is None  # the folders are the split
    # a val class that train does not have is an error naming it
    write_video(tmp_path / "val" / "c new" / "0.mp4", num_frames=5)
    with pytest.raises(AnnotationError, match=r"c new.*has no folder in"):
        build_dataset(cfg(tmp_path), "val", train=False)
    shutil.rmtree(tmp_path / "val")
    # train/ alone: val is drawn from it
    val = build_dataset(cfg(tmp_path), "val", train=False)
    assert len(val) == 2 and all(r.startswith("train/") for r in rels(val))
    assert len(build_dataset(cfg(tmp_path), "train", train=True)) == 4


def test_no_test_split_without_test_folder(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no test split"):
        build_dataset(cfg(tree), "test", train=False)


# --- errors: empty class folder, fewer than 2 classes ------------------------------------------------
def test_empty_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    write_video(tmp_path / "walk" / "a.mp4", num_frames=5)
    write_video(tmp_path / "run" / "b.mp4", num_frames=5)
    (tmp_path / "jump").mkdir()
    with pytest.raises(AnnotationError, match=r"jump: class folder 'jump' has no videos.*\(it is empty\)"):
        build_dataset(cfg(tmp_path), "train", train=True)
    (tmp_path / "jump" / "todo.txt").write_text("film this")
    with pytest.raises(AnnotationError, match=r"'jump' has no videos or frame folders \(it holds 1 other files"):
        build_dataset(cfg(tmp_path), "train", train=True)


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    write_video(tmp_path / "walk" / "a.mp4", num_frames=5)
    write_video(tmp_path / "loose.mp4", num_frames=5)
    with pytest.raises(AnnotationError, match=r"found 1 class folder\(s\) \['walk'\].*at least 2.*videos directly"):
        build_dataset(cfg(tmp_path), "train", train=True)
    with pytest.raises(FileNotFoundError, match=r"data\.root is not a folder"):
        build_dataset(cfg(tmp_path / "nope"), "train", train=True)


# --- frame folders in name order ---------------------------------------------------------------------
def test_frame_folders_are_read_in_natural_name_order(tmp_path: Path) -> None:
    folder = write_png_frames(tmp_path / "f", 12)
    (folder / "thumbs.db").write_bytes(b"x")
    images = list_frame_images(folder)
    assert [p.name for p in images[:3]] == ["frame_1.png", "frame_2.png", "frame_3.png"] and len(images) == 12
    assert [decode_index(f) for f in read_sorted_frames(folder, [0, 9, 11, 20]).numpy()] == [0, 9, 11, 11]
    jpgs = write_frame_folder(tmp_path / "j", num_frames=6)  # the frame_template names sort the same way
    assert [decode_index(f) for f in read_sorted_frames(jpgs, [5, 0]).numpy()] == [5, 0]
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]


# --- class names as labels in video_list / frame_list ----------------------------------------------------
def test_video_list_with_class_name_labels(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("riding a bike\ncafé\nbikes\n")
    for name in ("a.mp4", "b c.mp4", "d.mp4"):
        write_video(tmp_path / "v" / name, num_frames=6)
    (tmp_path / "train_list.txt").write_text("v/a.mp4 riding a bike\nv/b c.mp4 café\nv/d.mp4 2\n")
    ds = build_dataset(cfg(tmp_path, "video_list", labels_file="classes.txt"), "train", train=True)
    assert [s.target for s in ds.samples] == [0, 1, 2] and ds.samples[1].path.name == "b c.mp4"
    assert ds[1]["target"].item() == 1
    write_frame_folder(tmp_path / "fr" / "f1", num_frames=6)
    (tmp_path / "frames.txt").write_text("fr/f1 6 riding a bike\n")
    ds = build_dataset(cfg(tmp_path, "frame_list", labels_file="classes.txt", train_list="frames.txt"), "train", True)
    assert [s.target for s in ds.samples] == [0] and ds.samples[0].num_frames == 6


@pytest.mark.parametrize(
    ("kw", "content", "needle"),
    [
        ({}, "v/a.mp4 bikes\n", r"needs a class list: write the class names one per line.*set data.labels_file"),
        (
            {"num_classes": 3},
            "v/a.mp4 bikes\n",
            r"train_list.txt:1: label 'bikes' is not an integer; to use class names",
        ),
        (
            {"labels_file": "classes.txt"},
            "v/a.mp4 bike\n",
            r"train_list.txt:1: unknown class name 'bike': not in .*classes.txt",
        ),
        (
            {"labels_file": "classes.txt"},
            "v/a.mp4 cycling fast\n",
            r"train_list.txt:1: unknown class name 'fast'.*longest class name that ends the line",
        ),
        ({"labels_file": "classes.txt"}, "v/a.mp4 5\n", r"train_list.txt:1: label 5 out of range \[0, 3\)"),
    ],
)
def test_label_errors_say_what_to_do(tmp_path: Path, kw: dict, content: str, needle: str) -> None:
    (tmp_path / "classes.txt").write_text("riding a bike\ncafé\nbikes\n")
    (tmp_path / "train_list.txt").write_text(content)
    with pytest.raises((AnnotationError, ValueError), match=needle):
        build_dataset(cfg(tmp_path, "video_list", **kw), "train", train=True)


# --- data.exclude_list ---------------------------------------------------------------------------------
def test_exclude_list_drops_samples_any_format(
    tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(
        f"# bad ones\nzebra/clip 0.mp4\n./riding a bike/frames a/\n{tree / 'café crème' / 'clip 2.mkv'}\n"
    )
    full = {s: set(rels(build_dataset(cfg(tree), s, train=False))) for s in ("train", "val")}
    with caplog.at_level(logging.WARNING):
        part = {s: set(rels(build_dataset(cfg(tree, exclude_list=str(exclude)), s, train=False))) for s in full}
    dropped = (full["train"] | full["val"]) - (part["train"] | part["val"])
    assert dropped == {"zebra/clip 0.mp4", "riding a bike/frames a", "café crème/clip 2.mkv"}
    assert any("excluded" in r.getMessage() and "data.exclude_list" in r.getMessage() for r in caplog.records)
    ann = parse_annotation(cfg(tree, exclude_list=str(exclude)), "train")
    assert ann.excluded == len(full["train"] - part["train"])
    # a generic list; the exclude list relative to the current folder (it is not under root)
    (tmp_path / "list.txt").write_text("zebra/clip 0.mp4 0\nzebra/clip 1.webm 1\n")
    (tmp_path / "ex.txt").write_text("zebra/clip 0.mp4\n")
    monkeypatch.chdir(tmp_path)
    c = cfg(tree, "video_list", num_classes=2, train_list=str(tmp_path / "list.txt"), exclude_list="ex.txt")
    assert rels(build_dataset(c, "train", train=True)) == ["zebra/clip 1.webm"]


def test_frame_folder_of_any_naming_loads_through_the_dataset(tree: Path) -> None:
    ds = build_dataset(cfg(tree, val_fraction=0.0), "train", train=False)
    index = next(i for i, s in enumerate(ds.samples) if s.frames)
    item = ds[index]
    assert item["clip"].shape[-3] == SMALL["num_frames"]


def test_train_writes_the_split_to_the_run_folder_and_eval_reuses_it(tree: Path, tmp_path: Path) -> None:
    from conftest import tiny_config_overrides

    from sevnet.engine import evaluate, load_config, train

    out = tmp_path / "run"
    overrides = tiny_config_overrides(tree, out, **{"data.format": "folder", "data.labels_file": "null",
                                                    "data.num_frames": 4, "train.epochs": 1})  # fmt: skip
    result = train(load_config(None, overrides))
    split = out / "split.csv"
    assert split.is_file() and result.checkpoint.is_file()
    saved = load_config(out / "config.yaml")
    assert Path(saved.data.split_file) == split.resolve()
    before = split.read_text()
    (tree / CLASSES[0] / "clip 9.mp4").write_bytes((tree / CLASSES[0] / "clip 0.mp4").read_bytes())
    try:  # a video added after training does not move the evaluation split
        val_rows = sum(1 for line in before.splitlines()[1:] if line.endswith(",val"))
        assert len(build_dataset(saved.data, "val", train=False)) == val_rows
        assert "top1" in evaluate(saved, result.checkpoint, out_dir=tmp_path / "eval")
    finally:
        (tree / CLASSES[0] / "clip 9.mp4").unlink()


def test_a_class_with_a_single_video_warns_in_the_split_and_in_data_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 25 item 8: a class folder with one video is trained on but never validated: said, not silent."""
    from sevnet.cli import main

    root = tmp_path / "clips"
    for i in range(4):
        write_video(root / "waving" / f"w{i}.mp4", num_frames=10)
    write_video(root / "lonely_class" / "only.mp4", num_frames=10)
    with caplog.at_level(logging.WARNING, logger="sevnet.data.folder"):
        build_dataset(cfg(root), "train", train=True)
    assert "1 class(es) with a single video, trained on but never validated: lonely_class" in caplog.text
    assert main(["data", "check", str(root), "--workers", "0", "--no-progress", "--out", str(tmp_path / "dc")]) == 0
    assert "1 class(es) have no validation sample (a single video?): lonely_class" in capsys.readouterr().out


def test_symlink_loops_in_a_class_folder_are_walked_once_and_listed(tmp_path: Path, capsys) -> None:
    """Issue 25 item 6: a link back to an ancestor (and one to itself) no longer recurses to ELOOP."""
    from sevnet.cli import main

    root = tmp_path / "clips"
    for cls in ("a", "b"):
        for i in range(2):
            write_video(root / cls / f"{cls}{i}.mp4", num_frames=10)
    (root / "a" / "up").symlink_to("..")  # a/up -> clips: loops back through a/ and b/
    (root / "b" / "self").symlink_to("self")  # cannot be followed at all
    ds = build_dataset(cfg(root, val_fraction=0.0), "train", train=True)
    assert sorted(rels(ds)) == ["a/a0.mp4", "a/a1.mp4", "b/b0.mp4", "b/b1.mp4"]
    assert main(["data", "check", str(root), "--workers", "0", "--no-progress", "--out", str(tmp_path / "dc")]) == 0
    assert "checked 4 samples" in capsys.readouterr().out

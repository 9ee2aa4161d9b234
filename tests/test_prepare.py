"""``sevnet data prepare`` on real encoded files: every layout comes out as the same dataset (samples,
labels, clip shapes, the very frames), broken files are reported and copied while the rest is done,
a rerun skips finished files, frame counts are checked, and bad paths are clear errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from _videos import decode_index, truncate, write_frame_folder, write_video

from sevnet.cli import main
from sevnet.data import DataConfig, build_dataset
from sevnet.data.prepare import CODECS, DEFAULT_CODEC, count_decoded, prepare_dataset, report_path_for, scaled_size

SMALL = {"num_frames": 4, "train_scale": [32, 40], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}
SIZE = (96, 128)  # source frames (h, w); prepared with short side 48 -> 48 x 64
SHORT = 48


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def video(path: Path, frames: int = 10) -> None:
    write_video(path, num_frames=frames, size=SIZE)


def frames(path: Path, count: int = 8) -> None:
    write_frame_folder(path, num_frames=count, size=SIZE)


# --- one small dataset per layout: (build it under root) -> (format, config keys, splits) -----------
def _ssv2(root: Path) -> tuple[str, dict, list[str]]:
    (root / "something-something-v2-labels.json").write_text(json.dumps({"Pushing something": "0", "Holding x": "1"}))
    train = [{"id": "11", "template": "Pushing [something]"}, {"id": "12", "template": "Holding x"}]
    (root / "something-something-v2-train.json").write_text(json.dumps(train))
    (root / "something-something-v2-validation.json").write_text(json.dumps(train[1:]))
    for vid in ("11", "12"):
        video(root / "20bn-something-something-v2" / f"{vid}.webm")
    return "ssv2", {}, ["train", "val"]


def _ssv1(root: Path) -> tuple[str, dict, list[str]]:
    (root / "something-something-v1-labels.csv").write_text("Moving up\nMoving down\n")
    (root / "something-something-v1-train.csv").write_text("7;Moving down\n8;Moving up\n")
    for vid in ("7", "8"):
        frames(root / "20bn-something-something-v1" / vid)
    return "ssv1", {}, ["train"]


def _kinetics(root: Path, flat: bool) -> tuple[str, dict, list[str]]:
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    rows = ['"passing American football (in game)",abc,10,20,train,0', "abseiling,def,0,10,train,0",
            "abseiling,gone,5,15,train,0"]  # fmt: skip
    (root / "train.csv").write_text(header + "\n".join(rows) + "\n")
    (root / "validate.csv").write_text(header + rows[1] + "\n")
    for label, name in [("passing American football (in game)", "abc_000010_000020.mp4"),
                        ("abseiling", "def_000000_000010.mp4")]:  # fmt: skip
        video(root / "train" / (name if flat else f"{label}/{name}"))
    video(root / "val" / ("def_000000_000010.mp4" if flat else "abseiling/def_000000_000010.mp4"))
    return "kinetics400", {"sampling": "dense", "frame_stride": 2}, ["train", "val"]


def _mit(root: Path, multi: bool) -> tuple[str, dict, list[str]]:
    (root / "moments_categories.txt").write_text("running,0\njumping,1\nswimming,2\n")
    single = "running/a.mp4,running,3,0\njumping/b.mp4,jumping,2,1\n"
    lines = "running/a.mp4,running,swimming\njumping/b.mp4,1,0\n" if multi else single
    (root / "trainingSet.csv").write_text(lines)
    for rel in ("running/a.mp4", "jumping/b.mp4"):
        video(root / "training" / rel)
    return ("mmit" if multi else "mit"), {}, ["train"]


def _gym(root: Path) -> tuple[str, dict, list[str]]:
    names = ["0LtLS9wROrk_E_002407_002435_A_0003_0005", "0LtLS9wROrk_E_002407_002435_A_0007_0009"]
    (root / "gym99_train_element_v1.1.txt").write_text(f"{names[0]} 98\n{names[1]} 3\n")
    (root / "gym99_categories.txt").write_text("Clabel: 3; set: 1; Glabel: 4; (VT) round-off\n")
    for name in names:
        video(root / "subactions" / f"{name}.mp4")
    return "gym99", {}, ["train"]


def _video_list(root: Path) -> tuple[str, dict, list[str]]:
    (root / "classes.txt").write_text("a\nb\nc\n")
    video(root / "v" / "x.avi")
    video(root / "v" / "y.mkv")
    (root / "train_list.txt").write_text("v/x.avi 2\nv/y.mkv a\n")
    return "video_list", {"labels_file": "classes.txt"}, ["train"]


def _frame_list(root: Path) -> tuple[str, dict, list[str]]:
    frames(root / "fr" / "f1", 6)
    frames(root / "fr" / "f2", 9)
    (root / "train_list.txt").write_text("fr/f1 6 1\nfr/f2 9 0\n")
    return "frame_list", {"num_classes": 3}, ["train"]


def _folder_splits(root: Path) -> tuple[str, dict, list[str]]:
    for split, ext in (("train", ".mp4"), ("val", ".webm")):
        for cls in ("cats", "dogs on skis"):
            video(root / split / cls / f"clip1{ext}")
    frames(root / "train" / "cats" / "burst")
    return "folder", {}, ["train", "val"]


def _folder_drawn(root: Path) -> tuple[str, dict, list[str]]:
    for cls in ("a", "b"):
        for i, ext in enumerate((".mp4", ".avi", ".webm")):
            video(root / cls / f"v{i}{ext}")
    return "folder", {"val_fraction": 0.34}, ["train", "val"]


LAYOUTS = {
    "ssv2": _ssv2,
    "ssv1": _ssv1,
    "kinetics_per_class": lambda r: _kinetics(r, flat=False),
    "kinetics_flat": lambda r: _kinetics(r, flat=True),
    "mit": lambda r: _mit(r, multi=False),
    "mmit": lambda r: _mit(r, multi=True),
    "gym99": _gym,
    "video_list": _video_list,
    "frame_list": _frame_list,
    "folder_splits": _folder_splits,
    "folder_drawn": _folder_drawn,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_prepares_to_the_same_dataset(tmp_path: Path, layout: str) -> None:
    """The config works unchanged with data.root=DST: same samples, labels, missing clips and clip
    shapes, and the frames a clip reads are the same frames (their bar codes), at the new size."""
    src, dst = tmp_path / "src", tmp_path / "out" / "dst"
    src.mkdir()
    fmt, keys, splits = LAYOUTS[layout](src)
    report = prepare_dataset(src, dst, SHORT, workers=0, progress=False)
    assert not report.problems and report.rows and all(r["status"] == "ok" for r in report.rows)
    for split in splits:
        a = build_dataset(DataConfig(format=fmt, root=str(src), **SMALL, **keys), split, train=True)
        b = build_dataset(DataConfig(format=fmt, root=str(dst), **SMALL, **keys), split, train=True)
        assert len(a) == len(b) > 0 and a.classes == b.classes and len(a.missing) == len(b.missing)
        assert [s.target for s in a.samples] == [s.target for s in b.samples]
        assert [os.path.relpath(s.path, src) for s in a.samples] == [os.path.relpath(s.path, dst) for s in b.samples]
        for i in range(len(b)):
            assert b[i]["clip"].shape == a[i]["clip"].shape == (3, 4, 32, 32)
            assert b.count_frames(b.samples[i]) == a.count_frames(a.samples[i])
        wanted = [0, 3, 5]
        out = b.load_frames(b.samples[0], wanted)
        assert out.shape[1:3] == (48, 64)  # short side 48, aspect kept
        assert [decode_index(f) for f in out.numpy()] == wanted


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_each_codec_keeps_every_frame_and_its_timing(tmp_path: Path, codec: str) -> None:
    """Every candidate codec (the benchmark's) writes all frames, at their own timestamps: a variable
    frame rate video keeps its gaps, so the reader maps indices to the same frames."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    video(src / "c" / "plain.webm", 20)
    write_video(src / "c" / "vfr.mkv", num_frames=8, size=SIZE, pts=[0, 1, 2, 5, 6, 7, 10, 11])
    report = prepare_dataset(src, dst, SHORT, codec=codec, workers=0, progress=False)
    assert {r["path"]: (r["frames_in"], r["frames_out"]) for r in report.rows} == {
        "c/plain.webm": (20, 20), "c/vfr.mkv": (8, 8)}  # fmt: skip
    from sevnet.data import read_frames

    for name, wanted in (("plain.webm", [0, 7, 19]), ("vfr.mkv", [0, 3, 5, 10])):
        a = read_frames(src / "c" / name, wanted).numpy()
        b = read_frames(dst / "c" / name, wanted).numpy()
        assert [decode_index(f) for f in b] == [decode_index(f) for f in a]


def test_the_command_offers_the_codecs_the_module_has() -> None:
    from sevnet.commands import data

    assert set(data.CODECS) == set(CODECS) and data.DEFAULT_CODEC == DEFAULT_CODEC


def test_sizes_short_side_even_never_upscaled() -> None:
    assert scaled_size(320, 240, 128) == (170, 128)  # 170.67 -> even
    assert scaled_size(240, 320, 128) == (128, 170)  # portrait
    assert scaled_size(320, 240, 256) == (320, 240)  # never upscaled
    assert scaled_size(321, 181, 256) == (320, 180)  # odd source sides made even (tiny aspect change)
    assert scaled_size(1920, 1080, 256) == (456, 256)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A class-folder tree with good files and one of each bad kind."""
    src = tmp_path / "src"
    video(src / "a" / "good.mp4")
    video(src / "a" / "good2.webm")
    (src / "b").mkdir(parents=True)
    (src / "b" / "junk.mp4").write_text("not a video\n" * 20)
    (src / "b" / "empty.webm").write_bytes(b"")
    truncate(write_video(src / "b" / "cut.mkv", num_frames=40, size=SIZE), keep=0.5)
    frames(src / "b" / "frames")
    truncate(src / "b" / "frames" / "00003.jpg", keep=0.5)
    (src / "b" / ".DS_Store").write_text("x")
    (src / "notes.txt").write_text("kept as it is")
    return src


def test_broken_files_are_reported_copied_and_the_rest_is_done(
    broken: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dst = tmp_path / "dst"
    rc = main(["data", "prepare", str(broken), str(dst), "--short-side", str(SHORT), "--workers", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = read_rows(report_path_for(dst))
    assert report_path_for(dst).parent == tmp_path  # beside DST, not in it
    assert rows["a/good.mp4"]["status"] == rows["a/good2.webm"]["status"] == "ok"
    assert rows["b/junk.mp4"]["status"] == rows["b/empty.webm"]["status"] == "unreadable"
    assert rows["b/frames"]["status"] == "partial" and "00003.jpg" in rows["b/frames"]["reason"]
    assert rows["b/cut.mkv"]["frames_in"] == rows["b/cut.mkv"]["frames_out"]  # what decodes, all of it
    assert "a/good.mp4" not in out and "b/junk.mp4" in out and "could not be fully read" in out
    # the unreadable files are there as they were, so the dataset lists the same samples
    assert (dst / "b" / "junk.mp4").read_bytes() == (broken / "b" / "junk.mp4").read_bytes()
    assert (dst / "b" / "frames" / "00003.jpg").read_bytes() == (broken / "b" / "frames" / "00003.jpg").read_bytes()
    assert (dst / "notes.txt").read_text() == "kept as it is" and not (dst / "b" / ".DS_Store").exists()
    assert count_decoded(dst / "a" / "good.mp4") == 10 and len(list((dst / "b" / "frames").iterdir())) == 8
    assert not list(dst.rglob(".*prepare-tmp"))


def test_rerun_skips_finished_files_and_redoes_the_rest(broken: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    prepare_dataset(broken, dst, SHORT, workers=0, progress=False)
    inode = {p: (p.stat().st_ino, p.stat().st_ctime_ns) for p in dst.rglob("*") if p.is_file()}
    (dst / "a" / "good.mp4").unlink()  # an interrupted run: one file never renamed into place
    (dst / "a" / ".good.mp4.prepare-tmp").write_bytes(b"half")
    os.utime(broken / "a" / "good2.webm")  # a source changed since: done again
    report = prepare_dataset(broken, dst, SHORT, workers=0, progress=False)
    status = {r["path"]: r["status"] for r in report.rows}
    assert status["a/good.mp4"] == status["a/good2.webm"] == "ok"
    assert status["b/junk.mp4"] == "unreadable" and status["b/frames"] == "partial"  # still reported
    assert status["b/cut.mkv"] == "done"
    redone = {p for p in dst.rglob("*") if p.is_file() and inode.get(p) != (p.stat().st_ino, p.stat().st_ctime_ns)}
    assert redone == {dst / "a" / "good.mp4", dst / "a" / "good2.webm"}
    assert count_decoded(dst / "a" / "good.mp4") == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{t}/none", "{t}/dst"], "SRC not found"),
        (["{t}/src", "{t}/src/prepared"], "is inside SRC"),
        (["{t}/src/a", "{t}/src"], "is inside DST"),
        (["{t}/src/notes.txt", "{t}/dst"], "SRC is not a folder"),
        (["{t}/src", "{t}/dst", "--short-side", "1"], "at least 2 pixels"),
    ],
)
def test_bad_paths_are_clear_errors(
    broken: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    argv = [a.format(t=tmp_path) for a in args]
    rc = main(["data", "prepare", *argv] + ([] if "--short-side" in argv else ["--short-side", "48"]))
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "dst").exists() and not (broken / "prepared").exists()

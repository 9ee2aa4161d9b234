"""``sevnet data check`` on real files of every bad kind; the exclude list it writes, read back by
training; and worker isolation (a decoder that crashes or hangs costs one file, not the scan)."""

from __future__ import annotations

import csv
import faulthandler
import os
import signal
import time
from pathlib import Path

import pytest
from _videos import truncate, write_frame_folder, write_video

from sevnet.cli import main
from sevnet.data import DataConfig, build_dataset
from sevnet.data.check import Finding, run_isolated

SMALL = {"num_frames": 4, "train_scale": [32, 40], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}
GOOD = ["a b/good0.mp4", "a b/good1.webm", "a b/good2.mp4", "ç/good0.mp4", "ç/good1.webm", "ç/good2.mp4", "a b/frames"]
BAD = {  # path: status
    "a b/empty.mp4": "empty",
    "ç/text.mp4": "unreadable",
    "a b/cut.mkv": "truncated",
    "ç/cut.avi": "truncated",
    "ç/short.mp4": "too_short",
    "a b/big.mp4": "oversized",
    "ç/bad frames": "corrupt",
}


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<class>/: six good videos, one of each bad kind, a variable-frame-rate one, a stray file."""
    root = tmp_path_factory.mktemp("messy")
    for rel in GOOD[:-1]:
        write_video(root / rel, num_frames=8)
    write_frame_folder(root / "a b" / "frames", num_frames=8)
    truncate(write_frame_folder(root / "ç" / "bad frames", num_frames=8) / "00003.jpg", keep=0.5)
    (root / "a b" / "empty.mp4").write_bytes(b"")
    (root / "ç" / "text.mp4").write_text("not a video\n" * 20)
    truncate(write_video(root / "a b" / "cut.mkv", num_frames=40), keep=0.5)
    truncate(write_video(root / "ç" / "cut.avi", num_frames=40), keep=0.8)
    write_video(root / "ç" / "short.mp4", num_frames=2)
    write_video(root / "a b" / "big.mp4", num_frames=8, size=(96, 128))
    write_video(root / "ç" / "vfr.mkv", num_frames=8, pts=[0, 1, 2, 5, 6, 7, 10, 11])
    (root / "ç" / "notes.txt").write_text("to do")
    return root


def test_check_dir_reports_every_bad_kind_and_training_drops_them(
    messy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "check"
    args = ["data", "check", str(messy), "data.num_frames=4", "--max-pixels", "5000", "--out", str(out)]
    assert main([*args, "--workers", "2", "--no-progress"]) == 1
    rows = read_report(out / "report.csv")
    assert list(rows[0]) == ["path", "split", "class", "status", "reason", "frames", "width", "height", "fps"]
    status = {r["path"]: r["status"] for r in rows}
    assert status == {**dict.fromkeys(GOOD, "ok"), **BAD, "ç/vfr.mkv": "vfr"}
    by_path = {r["path"]: r for r in rows}
    assert {r["split"] for r in rows} == {"train", "val"} and by_path["ç/short.mp4"]["class"] == "ç"
    assert by_path["a b/good0.mp4"]["frames"] == "8" and by_path["a b/good0.mp4"]["width"] == "64"
    assert float(by_path["a b/good0.mp4"]["fps"]) == pytest.approx(12)
    assert "0 bytes" in by_path["a b/empty.mp4"]["reason"]
    assert "cannot open as video" in by_path["ç/text.mp4"]["reason"]
    assert "of the 40 frames the container lists decode" in by_path["ç/cut.avi"]["reason"]
    assert "the container claims" in by_path["a b/cut.mkv"]["reason"]
    assert "2 frames, fewer than data.num_frames=4" in by_path["ç/short.mp4"]["reason"]
    assert "128x96 = 12288 pixels > max 5000" in by_path["a b/big.mp4"]["reason"]
    assert "variable frame rate" in by_path["ç/vfr.mkv"]["reason"]
    assert "1 of 8 images do not decode (first: 00003.jpg" in by_path["ç/bad frames"]["reason"]
    assert by_path["a b/frames"]["frames"] == "8" and by_path["a b/frames"]["fps"] == ""
    excluded = (out / "exclude.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(excluded) == sorted(BAD)  # a variable frame rate is read correctly: reported, kept
    printed = capsys.readouterr()
    assert "checked 15 samples (train 12, val 3)" in printed.out and "data.exclude_list=" in printed.out
    # training with the exclude list: the bad files are gone and every remaining sample loads
    c = DataConfig(format="folder", root=str(messy), exclude_list=str(out / "exclude.txt"), num_workers=0, **SMALL)
    datasets = [build_dataset(c, s, train=s == "train") for s in ("train", "val")]
    kept = {s.path.relative_to(messy).as_posix() for ds in datasets for s in ds.samples}
    assert kept == {*GOOD, "ç/vfr.mkv"}
    assert all("error" not in ds[i] for ds in datasets for i in range(len(ds)))


def test_check_config_missing_file_then_clean(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data"
    for name in ("ok.mp4", "ok2.webm"):
        write_video(root / name, num_frames=6)
    (root / "train_list.txt").write_text("ok.mp4 0\nmissing.mp4 1\n")
    (root / "val_list.txt").write_text("ok2.webm 1\n")
    config = tmp_path / "exp" / "cfg.yaml"
    config.parent.mkdir()
    config.write_text(f"data:\n  format: video_list\n  root: {root}\n  num_classes: 2\n  num_frames: 4\n")
    assert main(["data", "check", str(config), "--workers", "1", "--no-progress"]) == 1
    out = config.parent / "data_check"  # default: beside the config
    rows = {r["path"]: r for r in read_report(out / "report.csv")}
    assert rows["missing.mp4"]["status"] == "missing" and rows["missing.mp4"]["reason"] == "no such file"
    assert (out / "exclude.txt").read_text() == "missing.mp4\n"
    assert "test: not checked" in capsys.readouterr().out
    (root / "train_list.txt").write_text("ok.mp4 0\n")
    assert main(["data", "check", str(config), "--workers", "1", "--no-progress"]) == 0
    assert (out / "exclude.txt").read_text() == "" and len(read_report(out / "report.csv")) == 2
    assert main(["data", "check", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert main(["data", "check", str(config), "--exclude", "bogus", "--no-progress"]) == 2


def test_check_dir_default_out_is_hidden_inside_the_dataset(messy: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "d"
    for rel in GOOD[:-1]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((messy / rel).read_bytes())
    monkeypatch.chdir(root)
    assert main(["data", "check", ".", "--workers", "0", "--no-progress"]) == 0
    assert (root / ".data_check" / "report.csv").is_file() and not (root / "data_check").exists()
    printed = capsys.readouterr().out  # a class-folder tree has no test split by its layout: not a problem
    assert "test: none (a class-folder tree is drawn into train and val" in printed and "not checked" not in printed
    assert len(build_dataset(DataConfig(format="folder", root=str(root), **SMALL), "train", train=True)) == 4


# --- isolation: one worker process per file in flight -------------------------------------------------
def _flaky_decoder(path: str, *_: object) -> Finding:
    if "crash" in path:
        faulthandler.disable()  # pytest's would print the dying worker's stack
        os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder bug does to its process
    if "hang" in path:
        time.sleep(60)
    return Finding("ok", frames=len(path))


def test_a_crashing_or_hanging_decoder_costs_one_file() -> None:
    tasks = [(name, False, 4, 100) for name in ("a.mp4", "crash.mp4", "b.mp4", "hang.mp4", "c.mp4", "crash2.mp4")]
    results = run_isolated(_flaky_decoder, tasks, workers=2, timeout=2.0, progress=False)
    assert [r.status for r in results] == ["ok", "crashed", "ok", "crashed", "ok", "crashed"]
    assert "decoder crashed" in results[1].reason and "SIGSEGV" in results[1].reason
    assert "decoder hung" in results[3].reason
    assert results[4].frames == len("c.mp4")

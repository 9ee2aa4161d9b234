"""Issue 25 items 6 and 7, on real files: inputs that used to end in a traceback or in a message naming
nothing (a FIFO taken for a missing file, a frame folder of mixed image sizes that data check passed
but training failed on with torch's "stack expects each tensor to be equal size")."""

from __future__ import annotations

import os
import re
from pathlib import Path

from _scenes import tiny_checkpoint
from _videos import write_frame_folder, write_video
from conftest import tiny_config_overrides
from PIL import Image

from sevnet.cli import main


def test_a_fifo_or_device_given_as_a_video_is_named_as_such(tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    good = write_video(tmp_path / "ok.mp4", num_frames=12)
    assert main(["predict", str(fifo), "/dev/zero", str(good), "--checkpoint", str(ckpt), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{fifo}: ERROR {fifo}: not a regular file (a FIFO, device or socket)" in out
    assert "/dev/zero: ERROR /dev/zero: not a regular file" in out and f"{good}: " in out


def test_a_frame_folder_of_mixed_sizes_is_named_by_data_check_and_by_predict(tmp_path: Path, capsys) -> None:
    root = tmp_path / "clips"
    for cls in ("a", "b"):
        for i in range(3):
            write_frame_folder(root / cls / f"{cls}{i}", num_frames=10)
    odd = root / "a" / "a1"
    Image.new("RGB", (32, 32)).save(odd / "00004.jpg")  # one frame of another size
    assert main(["data", "check", str(root), "--workers", "0", "--no-progress", "--out", str(tmp_path / "dc")]) == 1
    out = capsys.readouterr().out
    assert re.search(r"unreadable +(train|val) +a/a1: images of 2 sizes: 00001.jpg is 64x48, 00004.jpg is 32x32", out)
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    assert main(["predict", str(odd), "--checkpoint", str(ckpt), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "must all have one size" in out and "stack expects" not in out


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write in: a read-only one (root writes through permission bits,
    so there: a folder under /sys, which no one may create)."""
    if os.geteuid() == 0:
        return Path("/sys/sevnet-out")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"


def test_unwritable_output_folders_are_named_before_any_work(motion_dataset: Path, tmp_path: Path, capsys) -> None:
    ro = _unwritable(tmp_path)
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    video = write_video(tmp_path / "v.mp4", num_frames=12)
    cases = {
        ("predict", str(video), "--checkpoint", str(ckpt), "--out", str(ro / "r.jsonl")): f"{ro / 'r.jsonl'}: cannot",
        ("predict", str(video), "--checkpoint", str(ckpt), "--window", "1", "--csv", str(ro / "t.csv")): "--csv folder",
        ("data", "check", str(motion_dataset), "--out", str(ro)): "data check --out",
        ("export", str(ckpt), "--out", str(ro / "m")): "the --out folder",
    }
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  epochs: 1\n")
    cases[("train", str(cfg_file), *tiny_config_overrides(motion_dataset, ro))] = "train.out_dir"
    for argv, what in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert what in err and "cannot write there" in err and "Traceback" not in err, err

"""Issue 25 items 6 and 7, on real files: inputs that used to end in a traceback or in a message naming
nothing (a FIFO taken for a missing file, a frame folder of mixed image sizes that data check passed
but training failed on with torch's "stack expects each tensor to be equal size")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
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


def test_a_sidecar_whose_preprocessing_does_not_fit_the_model_is_refused_at_load(tmp_path: Path) -> None:
    """Issue 25 item 6: an edited crop in the sidecar (not covered by its digests) used to surface as
    ONNX Runtime's InvalidArgument at the first prediction."""
    import json

    import torch
    from _scenes import ColourStub, meta_for

    import sevnet
    from sevnet.deploy.runtime import ModelFileError, sidecar_path, write_sidecar

    model = tmp_path / "m.onnx"
    torch.onnx.export(ColourStub(8.0), (torch.randn(1, 3, 8, 32, 32),), str(model), input_names=["clip"],
                      output_names=["logits"], dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False, opset_version=17)  # fmt: skip
    write_sidecar(model, meta_for())
    assert sevnet.load(model).classes == ["red", "green", "blue"]
    record = json.loads(sidecar_path(model).read_text())
    record["data"]["eval_crop"] = 48
    sidecar_path(model).write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match=r"m.onnx: does not accept the 1x3x8x48x48 clip its sidecar m.sevnet.json"):
        sevnet.load(model)


def test_non_utf8_and_newline_file_names_are_skipped_or_escaped(tmp_path: Path, capsys, caplog) -> None:
    """Issue 25 item 7: a Latin-1 file name failed split.csv's writing ("surrogates not allowed", no file
    named, a .split.csv.tmp left behind); a newline in a name was printed raw, forging a result line."""
    from sevnet.data import DataConfig, build_dataset
    from sevnet.data.folder import freeze_split

    root = tmp_path / "clips"
    for cls in ("a", "b"):
        for i in range(2):
            write_video(root / cls / f"{cls}{i}.mp4", num_frames=10)
    latin1 = os.fsdecode(b"caf\xe9.mp4")  # not UTF-8: Python holds the byte as a surrogate
    write_video(root / "a" / latin1, num_frames=10)
    cfg = DataConfig(format="folder", root=str(root), num_frames=4, eval_scale=32, eval_crop=32, val_fraction=0.0)
    assert len(build_dataset(cfg, "train", train=True)) == 4  # the undecodable name is ignored, named in the log
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "caf\\xe9.mp4 (its name is not valid UTF-8" in logged
    logged.encode("utf-8")  # escaped: a UTF-8 log file (and pytest-xdist's report transport) takes it
    frozen = freeze_split(cfg, tmp_path / "run")
    assert Path(frozen.split_file).read_text().count(".mp4") == 4 and not list((tmp_path / "run").glob(".*.tmp"))
    assert main(["data", "check", str(root), "--workers", "0", "--no-progress", "--out", str(tmp_path / "dc")]) == 0
    assert "Traceback" not in capsys.readouterr().err

    forged = tmp_path / "v" / "x.mp4\nforged.mp4: red (99.0%).mp4"
    write_video(tmp_path / "v" / "plain.mp4", num_frames=12).rename(forged)
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    assert main(["predict", str(forged), "--checkpoint", str(ckpt), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "x.mp4\\x0aforged.mp4: red (99.0%).mp4: " in out


def test_max_pixels_guards_frame_folder_images_too(tmp_path: Path) -> None:
    """Issue 25 item 10 (a known limit closed): data.max_pixels refused only video files; an image of a
    frame folder is now checked from its header before it is decoded."""
    from sevnet.data import DataConfig, build_dataset

    root = tmp_path / "clips"
    for cls in ("a", "b"):
        write_frame_folder(root / cls / f"{cls}0", num_frames=10)  # 64x48 = 3072 pixels
    small = {"format": "folder", "root": str(root), "num_frames": 4, "eval_scale": 32, "eval_crop": 32}
    for fmt_kw in ({}, {"format": "frame_list", "num_classes": 2}):
        if fmt_kw:
            (root / "train_list.txt").write_text("a/a0 10 0\nb/b0 10 1\n")
        ok = build_dataset(DataConfig(**{**small, "val_fraction": 0.0, **fmt_kw}), "train", train=False)
        assert "clip" in ok[0]
        capped = build_dataset(
            DataConfig(**{**small, "val_fraction": 0.0, "max_pixels": 3000, **fmt_kw}), "train", False
        )
        assert "64x48 = 3072 pixels per frame is over the limit of 3000" in capped[0]["error"][1]


def test_a_checkpoint_with_a_nan_mean_is_refused_naming_the_file(tmp_path: Path, capsys) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    good = tiny_checkpoint(tmp_path / "m.safetensors")
    with safe_open(str(good), framework="pt") as f:
        header = f.metadata()
    meta = json.loads(header["meta"])
    meta["data"]["mean"] = [float("nan")] * 3
    bad = tmp_path / "nan-mean.safetensors"
    save_file(load_file(str(good)), str(bad), metadata={**header, "meta": json.dumps(meta)})
    video = write_video(tmp_path / "v.mp4", num_frames=12)
    assert main(["predict", str(video), "--checkpoint", str(bad), "--json"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: its recorded preprocessing is invalid: data.mean must be" in err

"""Issue 13, untrusted data: sample paths confined to data.root, a resolution limit, bad-file
messages that name the file, skipped and partially decoded samples named in the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from _videos import write_video

from sevnet.data import DataConfig, build_dataset
from sevnet.data.annotations import AnnotationError

SMALL = {"num_frames": 4, "train_scale": [32, 32], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}


def cfg(root: Path, fmt: str, **kw: object) -> DataConfig:
    return DataConfig(format=fmt, root=str(root), **{"num_workers": 0, **SMALL, **kw})


# --- item 6: annotation ids cannot escape data.root ---------------------------------------------
@pytest.mark.parametrize("bad", ["../outside/evil.mp4", "ABSOLUTE"])
def test_annotation_ids_outside_root_are_refused_with_file_and_line(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "data"
    secret = write_video(tmp_path / "outside" / "evil.mp4", num_frames=6)
    write_video(root / "ok.mp4", num_frames=6)
    bad = str(secret) if bad == "ABSOLUTE" else bad
    (root / "train_list.txt").write_text(f"ok.mp4 0\n{bad} 1\n")
    with pytest.raises(AnnotationError, match=r"train_list.txt:2: sample path .*evil.mp4 is outside data.root"):
        build_dataset(cfg(root, "video_list", num_classes=2), "train", train=True)
    ds = build_dataset(cfg(root, "video_list", num_classes=2, allow_outside_root=True), "train", train=True)
    assert [s.path.name for s in ds.samples] == ["ok.mp4", "evil.mp4"]  # explicitly allowed: read


def test_ssv2_ids_and_folder_split_file_rows_are_confined(tmp_path: Path) -> None:
    import json

    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({"Pushing something": "0"}))
    entries = [{"id": "../../etc/passwd", "template": "Pushing [something]"}]
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(entries))
    with pytest.raises(AnnotationError, match=r"v2-train.json: entry 1: sample path .* is outside data.root"):
        build_dataset(cfg(tmp_path, "ssv2"), "train", train=True)
    (tmp_path / "split.csv").write_text("path,class,split\n/etc/hostname,a,train\n")
    with pytest.raises(AnnotationError, match=r"split.csv \(path '/etc/hostname'\): sample path"):
        build_dataset(cfg(tmp_path, "folder", split_file="split.csv"), "train", train=True)


# --- item 9: a resolution limit, checked before frames are decoded ----------------------------------
def test_videos_over_max_pixels_are_skipped_in_training_and_named_in_predict(tmp_path: Path) -> None:
    import numpy as np

    from sevnet.data import build_loader
    from sevnet.data.video import DecodeError
    from sevnet.deploy.batch import predict_files
    from sevnet.deploy.predictor import Predictor

    write_video(tmp_path / "small.mp4", num_frames=8, size=(16, 16))
    write_video(tmp_path / "big.mp4", num_frames=8, size=(48, 64))
    (tmp_path / "train_list.txt").write_text("small.mp4 0\nbig.mp4 1\n")
    c = cfg(tmp_path, "video_list", num_classes=2, max_pixels=32 * 32)
    batch = next(iter(build_loader(build_dataset(c, "train", train=True), 2, train=False, cfg_data=c)))
    assert len(batch["clip"]) == 1 and len(batch["skipped"]) == 1
    path, reason = batch["skipped"][0]
    assert path.endswith("big.mp4") and "64x48 = 3072 pixels" in reason and "data.max_pixels" in reason
    data = {"num_frames": 4, "sampling": "segment", "frame_stride": 1, "eval_scale": 16, "eval_crop": 16,
            "mean": [0.5] * 3, "std": [0.2] * 3, "max_pixels": 32 * 32}  # fmt: skip
    predictor = Predictor(lambda x: np.zeros((len(x), 2), np.float32), {"data": data, "class_names": ["a", "b"]})
    with pytest.raises(DecodeError, match=r"big.mp4: 64x48 = 3072 pixels per frame is over the limit"):
        predictor.predict(tmp_path / "big.mp4")
    results = list(predict_files(predictor, [tmp_path / "small.mp4", tmp_path / "big.mp4"]))
    assert "top" in results[0] and "big.mp4" in results[1]["error"]
    assert DataConfig().max_pixels == 4096 * 2160  # the default: DCI 4K


# --- item 16: skipped and partially decodable samples named in the run folder ---------------------
def test_run_folder_names_skipped_and_partial_samples_below_the_threshold(motion_dataset: Path, tmp_path: Path) -> None:
    import csv
    import json
    import shutil

    from _videos import truncate
    from conftest import tiny_config_overrides

    from sevnet.engine import load_config, train

    root = tmp_path / "data"
    shutil.copytree(motion_dataset, root)
    truncate(write_video(root / "cut.webm", num_frames=40, size=(32, 32)), keep=0.6)
    with (root / "train_list.txt").open("a") as f:
        f.write("missing.mp4 0\ncut.webm 1\n")
    overrides = tiny_config_overrides(root, tmp_path / "run", **{"train.epochs": 1, "data.max_skip_fraction": 0.5})
    train(load_config(None, overrides))
    rows = list(csv.DictReader((tmp_path / "run" / "skipped.csv").open()))
    by_status = {r["status"]: r for r in rows}
    assert set(by_status) == {"skipped", "partial"}
    assert by_status["skipped"]["path"].endswith("missing.mp4") and "no such file" in by_status["skipped"]["reason"]
    assert by_status["partial"]["path"].endswith("cut.webm") and "truncated" in by_status["partial"]["reason"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_files"] == [by_status["skipped"]["path"]]
    assert summary["partial_files"] == [by_status["partial"]["path"]]
    # Issue 25 (a known limit closed): a resumed run's skipped.csv and summary cover the whole run
    assert by_status["skipped"]["times"] == "1" and summary["skipped_samples"] == 1
    train(load_config(None, [*overrides, "train.epochs=2"]), resume=True, allow_changed=["train.epochs"])
    rows = {r["status"]: r for r in csv.DictReader((tmp_path / "run" / "skipped.csv").open())}
    assert rows["skipped"]["times"] == "2" and rows["partial"]["times"] == "2"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_samples"] == 2


def test_the_skip_threshold_is_a_share_of_distinct_files_and_its_error_says_how_to_leave_them_out(
    motion_dataset: Path, tmp_path: Path
) -> None:
    """24 good videos and one missing: 1 bad file of 25 (4%, under a 4.5% threshold) trains, however often
    and however early it is drawn; two missing (7.7%) stop the run, naming each file once and the way out."""
    import shutil

    from conftest import tiny_config_overrides

    from sevnet.data import SkippedSamplesError
    from sevnet.engine import load_config, train

    root = tmp_path / "data"
    shutil.copytree(motion_dataset, root)
    listed = (root / "train_list.txt").read_text()
    (root / "train_list.txt").write_text(listed + "missing.mp4 0\n")
    limit = {"data.max_skip_fraction": 0.045, "train.epochs": 2, "train.epoch_clips": 100}
    train(load_config(None, tiny_config_overrides(root, tmp_path / "one", **limit)))
    assert "missing.mp4,skipped" in (tmp_path / "one" / "skipped.csv").read_text()

    (root / "train_list.txt").write_text(listed + "missing.mp4 0\ngone.mp4 1\n")
    with pytest.raises(SkippedSamplesError) as err:
        train(load_config(None, tiny_config_overrides(root, tmp_path / "two", **limit)))
    message = str(err.value)
    assert "2 of the 26 training videos could not be loaded" in message
    assert message.count("missing.mp4") == 1 and message.count("gone.mp4") == 1
    assert "sevnet data check" in message and "data.exclude_list=" in message


def test_predict_marks_a_file_that_decodes_only_in_part(tmp_path: Path, capsys) -> None:
    """As training names it in skipped.csv: the prediction of a cut-off file says it is partial."""
    import json

    from _scenes import scenes_video, tiny_checkpoint
    from _videos import truncate

    from sevnet.cli import main

    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    whole = scenes_video(tmp_path / "whole.mkv", (2.0, 2.0), fps=10)
    cut = truncate(scenes_video(tmp_path / "cut.mkv", (2.0, 2.0), fps=10), keep=0.5)
    assert main(["predict", str(whole), str(cut), "--checkpoint", str(ckpt), "--json", "--no-progress"]) == 0
    results = {Path(r["video"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert "partial" not in results["whole.mkv"] and results["cut.mkv"]["top"]
    assert results["cut.mkv"]["partial"].startswith("truncated: ")
    assert main(["predict", str(cut), "--checkpoint", str(ckpt)]) == 0
    assert "[partial: truncated: " in capsys.readouterr().out

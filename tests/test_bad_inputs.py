"""Issue 13, "a clear error, never a traceback": bad checkpoints, annotations, configs and output paths
exit 2 with ``sevnet VERB: error: ...`` naming the file; overrides may follow the flags; quantize checks
its data before exporting anything. Tiny untrained models and in-memory clips, no training on video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file
from test_run_folder import run

from sevnet import create_model
from sevnet.cli import build_parser, main, parse_args
from sevnet.data import AnnotationError, DataConfig, build_dataset
from sevnet.engine import CheckpointError
from sevnet.engine.checkpoint import FORMAT, save_checkpoint

TINY = {"stages": [[8, 8, 1], [16, 8, 1]], "stem_channels": 8, "head_channels": 16}
DATA = {"num_frames": 4, "sampling": "segment", "frame_stride": 4, "eval_scale": 32, "eval_crop": 32,
        "mean": [0.45] * 3, "std": [0.225] * 3, "frame_template": "{:05d}.jpg"}  # fmt: skip


def tiny_checkpoint(path: Path, **meta_changes: object) -> Path:
    meta = {"model": "sevnet_xs", "model_overrides": TINY, "num_classes": 2, "class_names": ["a", "b"],
            "multi_label": False, "data": DATA, **meta_changes}  # fmt: skip
    return save_checkpoint(path, create_model("sevnet_xs", num_classes=2, **TINY), {k: v for k, v in meta.items() if v})


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sevnet {argv[0]}: error: ") and "Traceback" not in err, err
    return err


def test_bad_resume_checkpoints_are_named(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(out, **{"train.epochs": 1})
    last = out / "checkpoints" / "last.safetensors"
    shutil.copy(out / "checkpoints" / "model.safetensors", last)  # a model file in place of last.safetensors
    with pytest.raises(CheckpointError, match=r"last\.safetensors: not a training checkpoint"):
        run(out, resume=True, **{"train.epochs": 1})
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"last\.safetensors: not a sevnet checkpoint"):
        run(out, resume=True, **{"train.epochs": 1})


def test_checkpoint_metadata_errors_are_named(tmp_path: Path, capsys) -> None:
    no_meta = tmp_path / "no_meta.safetensors"
    save_file({"model.x": create_model("sevnet_xs", num_classes=2, **TINY).fc.bias}, no_meta, {"format": FORMAT})
    cases = {
        no_meta: "no model metadata",
        tiny_checkpoint(tmp_path / "no_data.safetensors", data=None): "'data' is missing",
        tiny_checkpoint(tmp_path / "no_names.safetensors", class_names=None): "'class_names' is missing",
        tiny_checkpoint(tmp_path / "bad_key.safetensors", model_overrides={**TINY, "wings": 2}): "no model sevnet",
    }
    for path, reason in cases.items():
        err = error_of(capsys, ["export", str(path), "--out", str(tmp_path / "x")])
        assert f"{path}: " in err and reason in err, err
    err = error_of(capsys, ["predict", str(tmp_path / "v.mp4"), "--checkpoint", str(tmp_path / "no_names.safetensors")])
    assert "no_names.safetensors: metadata key 'class_names'" in err


@pytest.mark.parametrize(("entry", "reason"), [({"id": "1", "template": 5}, "'template' must be a string, got 5"),
                                              ({"id": None, "template": "x"}, "'id' must be a string")])  # fmt: skip
def test_ssv2_entries_of_the_wrong_type_are_named(tmp_path: Path, entry: dict, reason: str) -> None:
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({"x": "0"}))
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps([entry]))
    with pytest.raises(AnnotationError, match=rf"something-something-v2-train\.json: entry 1.*{reason}"):
        build_dataset(DataConfig(format="ssv2", root=str(tmp_path)), "train", train=True)


def test_bad_configs_and_output_paths_are_named_before_any_work(tmp_path: Path, capsys) -> None:
    (tmp_path / "syntax.yaml").write_text("train:\n  epochs: [1\n")
    (tmp_path / "list.yaml").write_text("- train\n- eval\n")
    assert f"{tmp_path / 'syntax.yaml'}:3: YAML syntax error" in error_of(
        capsys, ["train", str(tmp_path / "syntax.yaml")]
    )
    assert "list.yaml: a config is a mapping" in error_of(capsys, ["train", str(tmp_path / "list.yaml")])
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 1\n")
    err = error_of(capsys, ["train", str(tmp_path / "c.yaml"), f"train.out_dir={a_file}"])
    assert f"train.out_dir {a_file} cannot be a folder" in err
    err = error_of(capsys, ["eval", str(tmp_path / "c.yaml"), "--checkpoint", "none.safetensors", "--out", str(a_file)])
    assert f"eval --out {a_file} cannot be a folder" in err  # before the checkpoint or any evaluation
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    err = error_of(capsys, ["export", str(ckpt), "--out", str(a_file / "m")])
    assert f"--out folder {a_file} cannot be a folder; a file is in the way" in err
    for argv, flag in ((["quantize", str(ckpt), "--calib", "c.yaml", "--calib-clips", "0"], "--calib-clips"),
                       (["predict", "v.mp4", "--checkpoint", str(ckpt), "--clips", "0"], "--clips")):  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and f"argument {flag}: must be an integer >= 1" in capsys.readouterr().err


def test_overrides_may_follow_the_flags(capsys) -> None:
    parser = build_parser()
    forms = (["quantize", "m.safetensors", "--calib", "c.yaml", "data.root=X"],
             ["train", "c.yaml", "--resume", "train.epochs=3"],
             ["eval", "c.yaml", "data.eval_clips=2", "--checkpoint", "m.safetensors", "data.root=X"])  # fmt: skip
    overrides = [parse_args(parser, argv).overrides for argv in forms]
    assert overrides == [["data.root=X"], ["train.epochs=3"], ["data.eval_clips=2", "data.root=X"]]
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["train", "c.yaml", "--resume", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_quantize_checks_the_calibration_data_before_exporting(tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    (tmp_path / "c.yaml").write_text("data:\n  format: video_list\n  labels_file: classes.txt\n")
    argv = ["quantize", str(ckpt), "--calib", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "q")]
    err = error_of(capsys, [*argv, f"data.root={tmp_path / 'missing'}"])
    assert "missing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "m.safetensors"]  # no fp32 export left behind


@pytest.mark.parametrize(
    ("key", "value"), [("num_frames", 0), ("eval_crop", -1), ("train_scale", [0, 8]), ("std", [0.2, 0.0, 0.2])]
)
def test_zero_sizes_and_zero_std_are_config_errors(key: str, value: object, tmp_path: Path, capsys) -> None:
    """Issue 13 item 13: a zero num_frames or std was blamed on the videos; now the key is named, in a
    config and in a checkpoint's recorded preprocessing alike."""
    with pytest.raises(ValueError, match=f"data.{key} must"):
        DataConfig(format="video_list", **{key: value})
    if key in DATA or key == "eval_crop":
        ckpt = tiny_checkpoint(tmp_path / "m.safetensors", data={**DATA, key: value})
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"")
        assert main(["predict", str(video), "--checkpoint", str(ckpt)]) == 2
        assert f"data.{key} must" in capsys.readouterr().err


# --- issue 25 item 5: every bad value refused before any work, naming the key ---------------------
BAD_VALUES = {
    "train.max_minutes=nan": "train.max_minutes must be a number >= 0",
    "data.mean=[nan,0.45,0.45]": "data.mean must be a number in",
    "optim.lr=-1": "optim.lr must be a number > 0, got -1.0",
    "data.max_pixels=-1": "data.max_pixels must be an integer >= 0",
    "data.max_skip_fraction=nan": "data.max_skip_fraction must be a number in [0, 1], got nan",
    "train.batch_size=-4": "train.batch_size must be an integer >= 1, got -4",
    "train.epochs=0": "train.epochs must be an integer >= 1, got 0",
    "optim.weight_decay=inf": "optim.weight_decay must be a number >= 0, got inf",
    "optim.betas=[0.9,1.5]": "optim.betas must be a number in [0, 1) (each value)",
    "model.dropout=1.0": "model.dropout must be a number in [0, 1)",
    "data.val_fraction=1": "data.val_fraction must be a number in [0, 1)",
    "eval.batch_size=0": "eval.batch_size must be an integer >= 1",
    "optim.betas=[0.9]": "optim.betas must be two numbers",
    "data.train_scale=[160,128]": "data.train_scale must be [min, max] with min <= max",
    "eval.split=bogus": "eval.split must be train, val or test, got 'bogus'",
    "data.seed=-1": "data.seed must be an integer >= 0, got -1",
    "train.seed=-5": "train.seed must be an integer >= 0, got -5",
    "model.overrides.dropout=0.3": "model.overrides.dropout: set by the config itself, not an override (model.dropout)",
    "optim.mixup_alpha=-1": "optim.mixup_alpha must be a number >= 0",
}


@pytest.mark.parametrize("override", list(BAD_VALUES))
def test_bad_values_are_refused_by_key_before_any_work(motion_dataset: Path, tmp_path: Path, override, capsys) -> None:
    from conftest import tiny_config_overrides

    out = tmp_path / "run"
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 2\n")
    overrides = tiny_config_overrides(motion_dataset, out, **{"data.cache": "disk"})
    err = error_of(capsys, ["train", str(tmp_path / "c.yaml"), *overrides, override])
    assert BAD_VALUES[override] in err
    assert not out.exists()  # nothing cached, no run folder


@pytest.mark.parametrize(
    "flag", [["--every", "-1"], ["--timeout", "nan"], ["--stride", "0"], ["--window", "1000000000"], ["--topk", "0"]]
)
def test_bad_stream_flags_are_refused_by_name(tmp_path: Path, flag: list[str], capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(SystemExit) as exited:
        main(["stream", "v.mp4", "--checkpoint", str(ckpt), *flag])
    assert exited.value.code == 2 and f"argument {flag[0]}: must be" in capsys.readouterr().err

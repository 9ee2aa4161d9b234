"""Deployment on real runtimes: ONNX Runtime and OpenVINO exports, NNCF int8, predict on real files."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _videos import write_video
from conftest import _moving_square, tiny_config_overrides
from omegaconf import OmegaConf

from sevnet.cli import main
from sevnet.data import build_dataset
from sevnet.deploy.export import ExportMismatchError, check_agreement, export_checkpoint
from sevnet.deploy.quantize import QuantizationAccuracyError, quantize_checkpoint
from sevnet.deploy.runtime import onnx_runner, openvino_runner, torch_runner
from sevnet.engine import load_config, load_model, train


@pytest.fixture(scope="module")
def trained(motion_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny SEVNet trained on the moving-square videos: (checkpoint, config file)."""
    out = tmp_path_factory.mktemp("deploy_run")
    cfg = load_config(None, tiny_config_overrides(motion_dataset, out / "run", **{"train.epochs": 6}))
    train(cfg)
    cfg_file = out / "config.yaml"
    OmegaConf.save(cfg, cfg_file)
    return out / "run" / "checkpoints" / "model.safetensors", cfg_file


def test_export_onnx_and_openvino_agree_with_pytorch(trained, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    ckpt, _ = trained
    report = export_checkpoint(ckpt, "openvino", tmp_path / "m")
    assert report["onnx_max_rel_error"] < 1e-3 and report["openvino_max_rel_error"] < 1e-3
    model, _ = load_model(ckpt)
    ref = torch_runner(model)
    for runner in (onnx_runner(tmp_path / "m.onnx"), openvino_runner(tmp_path / "m.xml")):
        for shape in [(1, 3, 8, 32, 32), (4, 3, 8, 32, 32), (2, 3, 12, 32, 32)]:  # dynamic batch and T
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            np.testing.assert_allclose(runner(x), ref(x), rtol=1e-3, atol=1e-4)
    assert json.loads((tmp_path / "m.sevnet.json").read_text())["class_names"] == ["moving left", "moving right"]


def test_export_check_fails_and_says_by_how_much(trained) -> None:
    model, _ = load_model(trained[0])
    ref = torch_runner(model)
    with pytest.raises(ExportMismatchError, match=r"differ from PyTorch by [0-9.e+-]+ .*tolerance"):
        check_agreement(ref, lambda x: ref(x) + 0.5, (8, 32, 32), Path("broken.onnx"))


def test_int8_agrees_with_float32_and_threshold_fails(trained, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    import sevnet.deploy.quantize as quantize

    ckpt, cfg_file = trained
    cfg = load_config(cfg_file)
    built = []  # each build of a split reads (or caches) every clip of it: the evaluation split once
    monkeypatch.setattr(
        quantize, "build_dataset", lambda c, split, **kw: built.append(split) or build_dataset(c, split, **kw)
    )
    report = quantize_checkpoint(ckpt, cfg, tmp_path / "q", calib_clips=16, max_drop=100.0)
    assert built.count(cfg.eval.split) == 1, built
    # int8 top-1 agrees with float32 on most clips of the small trained model (8 held-out clips)
    assert report["top1_agreement"] >= 0.75, report
    xml = Path(report["int8_model"]).read_text()
    assert 'element_type="i8"' in xml and "FakeQuantize" in xml  # int8 weights and quantized activations
    # a gate nothing passes (int8 more than 100 points better than float32); -1 was flaky: on 8 clips int8
    # sometimes scores one clip (12.5 points) above float32
    with pytest.raises(QuantizationAccuracyError, match=r"drop of .*q2-int8.xml was removed. On 8 evaluation clips one "
                       r"clip is 12.50 points: this gate fails on a single clip"):  # fmt: skip
        quantize_checkpoint(ckpt, cfg, tmp_path / "q2", calib_clips=16, max_drop=-100.5)
    assert not list(tmp_path.glob("q2-int8*")) and (tmp_path / "q2.xml").is_file()  # the float32 export is kept


def _videos(tmp_path: Path) -> list[Path]:
    paths = []
    for i, suffix in enumerate([".mp4", ".webm", ".avi"]):
        frames = _moving_square(1 if i % 2 else -1, 15, 220, frames=24)
        paths.append(write_video(tmp_path / f"clip{i}{suffix}", frames=frames, size=(32, 32), fps=8))
    short = _moving_square(1, 15, 220, frames=2)
    paths.append(write_video(tmp_path / "short.mp4", frames=short, size=(32, 32), fps=8))  # shorter than the clip
    return paths


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_predict_on_real_files_every_backend(trained, tmp_path: Path, capsys, backend: str) -> None:
    ckpt, _ = trained
    args = ["--checkpoint", str(ckpt)]
    if backend != "torch":
        pytest.importorskip("openvino")
        export_checkpoint(ckpt, "openvino", tmp_path / "m")
        args = ["--model", str(tmp_path / ("m.onnx" if backend == "onnx" else "m.xml"))]
    videos = _videos(tmp_path)
    assert main(["predict", *map(str, videos), *args, "--topk", "2", "--clips", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [Path(r["video"]).name for r in results] == [v.name for v in videos]
    for r in results:
        names = [e["label"] for e in r["top"]]
        assert sorted(names) == ["moving left", "moving right"]
        assert sum(e["score"] for e in r["top"]) == pytest.approx(1.0, abs=1e-4)


def test_predict_bad_inputs(trained, tmp_path: Path, capsys) -> None:
    ckpt, _ = trained
    good = _videos(tmp_path)[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    code = main(["predict", str(good), str(broken), str(tmp_path / "nope.mp4"), "--checkpoint", str(ckpt), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    results = json.loads(captured.out)
    assert "top" in results[0]
    assert "broken.mp4" in results[1]["error"] and "nope.mp4" in results[2]["error"]
    assert "2 of 3 videos could not be read" in captured.err


def test_predict_refuses_mismatched_model_files(trained, tmp_path: Path, capsys) -> None:
    ckpt, _ = trained
    export_checkpoint(ckpt, "onnx", tmp_path / "m")
    # another checkpoint: same architecture, different weights
    other = tmp_path / "other.safetensors"
    model, meta = load_model(ckpt)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    from sevnet.engine.checkpoint import save_checkpoint

    save_checkpoint(other, model, meta)
    video = str(_videos(tmp_path)[0])
    assert main(["predict", video, "--model", str(tmp_path / "m.onnx"), "--checkpoint", str(other)]) == 2
    assert "was not exported from" in capsys.readouterr().err
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(tmp_path / "m.onnx", lonely)
    assert main(["predict", video, "--model", str(lonely)]) == 2
    assert "lonely.onnx: no metadata file" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    shutil.copy(tmp_path / "m.sevnet.json", tmp_path / "junk.sevnet.json")
    assert main(["predict", video, "--model", str(tmp_path / "junk.onnx")]) == 2
    assert "junk.onnx: not among the files junk.sevnet.json was written for" in capsys.readouterr().err
    assert main(["predict", video, "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors: no such checkpoint file" in capsys.readouterr().err


def test_export_without_the_deploy_extra_says_how_to_install_it(trained, tmp_path: Path, monkeypatch, capsys):
    """Without openvino (an optional extra), export stops with one line naming the package and the pip
    command, not an ImportError traceback."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an absent package looks like to import
    ckpt, _ = trained
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "OpenVINO export needs the package 'openvino'" in err and "pip install 'sevnet[deploy]'" in err

"""The Python API: sevnet.load on every model format agrees with the CLI, frames in memory agree
with the same frames in a file, weights load into a bare model, and docs/api.md's examples run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from _extras import has_module
from _scenes import meta_for, scene_frames, scenes_video, tiny_checkpoint
from _videos import write_video

import sevnet
from sevnet.cli import main
from sevnet.data.video import DecodeError
from sevnet.deploy.export import export_openvino
from sevnet.deploy.runtime import write_sidecar
from sevnet.engine import CheckpointError, load_model, read_meta
from sevnet.engine.checkpoint import read_checkpoint, weights_digest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SEVNet checkpoint and its ONNX and OpenVINO exports (with sidecars)."""
    folder = tmp_path_factory.mktemp("api_models")
    ckpt = tiny_checkpoint(folder / "model.safetensors")
    # What `sevnet export` writes (tested in test_deploy), through the faster TorchScript exporter.
    model, meta = load_model(ckpt)
    torch.onnx.export(model, (torch.randn(1, 3, 8, 32, 32),), str(folder / "model.onnx"), input_names=["clip"],
                      output_names=["logits"], dynamic_axes={"clip": {0: "batch", 2: "time"}, "logits": {0: "batch"}},
                      dynamo=False, opset_version=17)  # fmt: skip
    if has_module("openvino"):  # the deploy extra; the tests of that format skip without it
        export_openvino(folder / "model.onnx", folder / "model.xml")
    write_sidecar(folder / "model.onnx", {**meta, "weights_digest": weights_digest(read_checkpoint(ckpt)[0])})
    return {"torch": ckpt, "onnx": folder / "model.onnx", "openvino": folder / "model.xml"}


def _decode_all(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _video(tmp_path: Path, name: str = "video.mp4", colour: int = 1, frames: int = 20) -> Path:
    return write_video(tmp_path / name, frames=scene_frames(colour, frames), size=(48, 64), fps=10)


@pytest.mark.parametrize("fmt", ["torch", "onnx", "openvino"])
def test_load_every_format_agrees_with_cli(models, tmp_path: Path, capsys, fmt: str) -> None:
    if fmt == "openvino":
        pytest.importorskip("openvino")
    video = _video(tmp_path)
    predictor = sevnet.load(models[fmt])
    assert predictor.backend == fmt and predictor.classes == ["red", "green", "blue"]
    spec = predictor.clip_spec
    assert (spec.num_frames, spec.size, spec.sampling, spec.span_frames) == (8, 32, "segment", None)
    api = predictor.predict(video, topk=3)
    option = "--checkpoint" if fmt == "torch" else "--model"
    # sevnet.load runs on the CPU unless told; the CLI's --device auto would take a GPU (bf16) where one is
    assert main(["predict", str(video), option, str(models[fmt]), "--topk", "3", "--json", "--device", "cpu"]) == 0
    cli = json.loads(capsys.readouterr().out)[0]["top"]
    assert [e["label"] for e in api] == [e["label"] for e in cli]
    np.testing.assert_allclose([e["score"] for e in api], [e["score"] for e in cli], atol=1e-6)
    reference = sevnet.load(models["torch"]).predict(video, topk=3)  # every backend = PyTorch
    np.testing.assert_allclose([e["score"] for e in api], [e["score"] for e in reference], atol=1e-4)
    assert abs(sum(e["score"] for e in api) - 1) < 1e-5 and api[0]["score"] < 0.99  # not saturated


def test_numpy_clip_equals_the_same_frames_in_a_file(models, tmp_path: Path) -> None:
    predictor = sevnet.load(models["torch"])
    frames = np.stack(scene_frames(0, 7) + scene_frames(2, 13, 7))  # 20 frames, two scenes
    video = write_video(tmp_path / "clip.mp4", frames=list(frames), size=(48, 64), fps=10)
    from_file = predictor.scores(video)
    # the decoded frames give exactly the file's scores: same sampling, same preprocessing
    np.testing.assert_allclose(predictor.scores(_decode_all(video)), from_file, atol=1e-6)
    # the original frames: equal within what H.264 (crf 12) changes
    original = predictor.scores(frames)
    assert np.abs(original - from_file).max() < 0.02, (original, from_file)
    assert original.argmax() == from_file.argmax()
    np.testing.assert_allclose(predictor.scores(torch.from_numpy(frames)), original)  # a tensor works too
    np.testing.assert_allclose(predictor.scores(list(frames)), original)  # a list of frames is one video
    clips3 = predictor.scores(frames, clips=3)
    assert clips3.shape == (3,) and not np.allclose(clips3, original)


def test_predict_on_lists_batches_and_keeps_order(models, tmp_path: Path) -> None:
    predictor = sevnet.load(models["onnx"])
    videos = [_video(tmp_path, f"v{c}.mp4", colour=c) for c in range(3)]
    frames = _decode_all(videos[1])
    results = predictor.predict([videos[0], frames, videos[2], videos[1]], topk=2)
    assert len(results) == 4 and all(len(r) == 2 for r in results)
    singles = [predictor.predict(x, topk=2) for x in (videos[0], frames, videos[2], videos[1])]
    for got, want in zip(results, singles):
        assert [e["label"] for e in got] == [e["label"] for e in want]
        np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], atol=1e-5)
    assert predictor.scores([videos[0], videos[1]], batch_size=1).shape == (2, 3)


def test_predict_rejects_bad_inputs(models, tmp_path: Path) -> None:
    predictor = sevnet.load(models["torch"])
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="topk must be an integer >= 1"):
        predictor.predict(frames, topk=0)
    with pytest.raises(ValueError, match="clips must be an integer >= 1"):
        predictor.predict(frames, clips=0)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        predictor.predict(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(DecodeError, match=r"nope\.mp4"):
        predictor.predict(tmp_path / "nope.mp4")
    with pytest.raises(Exception, match="unknown model format"):
        sevnet.load(tmp_path / "model.pt")


def test_load_weights_into_a_bare_model(models) -> None:
    meta = read_meta(models["torch"])
    model = sevnet.create_model(meta["model"], num_classes=meta["num_classes"], **meta["model_overrides"])
    assert sevnet.load_weights(model, models["torch"]) is model
    reference, _ = sevnet.load_model(models["torch"])  # the README's one call: the model the checkpoint holds
    assert not reference.training and sevnet.load_model is load_model
    assert {"load", "load_model", "load_weights", "Predictor"} <= set(dir(sevnet))
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x))
    wrong = sevnet.create_model(meta["model"], num_classes=5, **meta["model_overrides"])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not match"):
        sevnet.load_weights(wrong, models["torch"])


def test_long_video_warning(models, tmp_path: Path, capsys) -> None:
    predictor = sevnet.load(models["torch"])
    assert predictor.long_video_warning(num_frames=40, fps=10) is None  # 4 s, 8 frames 0.5 s apart
    assert "--window" in predictor.long_video_warning(num_frames=200, fps=10)  # 20 s: 2.5 s apart
    dense = sevnet.Predictor(predictor.runner, meta_for(sampling="dense"))
    assert dense.clip_spec.span_frames == 15 and dense.clip_spec.seconds_at(30) == 0.5
    assert "trained on clips of about 0.5 s" in dense.long_video_warning(num_frames=90, fps=30)
    video = scenes_video(tmp_path / "long.mp4", (10, 10), fps=5)  # 20 s
    assert main(["predict", str(video), "--checkpoint", str(models["torch"]), "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning" in json.loads(captured.out)[0] and "--window" in captured.err


def test_docs_examples_run(models, tmp_path: Path, monkeypatch) -> None:
    """Every python block of docs/api.md, in order, in one namespace, next to the files it names."""
    pytest.importorskip("openvino")  # the examples load the OpenVINO export too
    for src in models["torch"].parent.iterdir():  # model.safetensors, .onnx, .xml, .bin, .sevnet.json
        os.symlink(src, tmp_path / src.name)
    _video(tmp_path)
    scenes_video(tmp_path / "long_video.mp4", (4, 3, 5))
    for c in range(2):
        _video(tmp_path / "videos" / f"class{c}", f"{c}.mp4", colour=c)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 6
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    segments = namespace["timeline"].segments
    assert segments[0].start == 0 and segments[-1].end == pytest.approx(12.0)
    for name in ("timeline.png", "timeline.csv", "overlay.mp4"):
        assert (tmp_path / name).stat().st_size > 0


def _folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "videos"
    good = [_video(root / f"class{i % 3}", f"v{i}.mp4", colour=i % 3, frames=12) for i in range(6)]
    (root / "class0" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    (root / "class1" / "empty.webm").write_bytes(b"")
    (root / "class1" / "notes.txt").write_text("not a video")
    return root, good


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_folder_with_workers_reports_bad_files_and_resumes(models, tmp_path: Path, capsys) -> None:
    root, good = _folder(tmp_path)
    out = tmp_path / "results.jsonl"
    args = ["predict", str(root), "--recursive", "--checkpoint", str(models["torch"]), "--out", str(out)]
    args += ["--workers", "2", "--batch-size", "4", "--topk", "2", "--no-progress", "--device", "cpu"]
    assert main(args) == 1
    assert "2 of 8 videos could not be read" in capsys.readouterr().err
    lines = _lines(out)
    assert len(lines) == 8 and sorted(r["video"] for r in lines if "top" in r) == sorted(map(str, good))
    errors = {Path(r["video"]).name: r["error"] for r in lines if "error" in r}
    assert set(errors) == {"broken.mp4", "empty.webm"} and "empty file" in errors["empty.webm"]
    predictor = sevnet.load(models["torch"])
    for r in lines:
        if "top" in r:
            want = predictor.predict(r["video"], topk=2)
            assert [e["label"] for e in r["top"]] == [e["label"] for e in want]
            np.testing.assert_allclose([e["score"] for e in r["top"]], [e["score"] for e in want], atol=1e-5)
    # stopped mid-way: 3 results and a torn line; a rerun finishes the rest, each video once
    text = out.read_text().splitlines()
    kept = [line for line in text if '"top"' in line][:3]
    out.write_text("\n".join(kept) + '\n{"video": "' + str(good[-1])[:10])
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "skipped 3 already in" in err and "dropped 1 line(s) that were not a result" in err
    lines = _lines(out)  # the torn line is gone: every line parses
    assert sorted(r["video"] for r in lines if "top" in r) == sorted(map(str, good))
    assert sorted(Path(r["video"]).name for r in lines[3:] if "error" in r) == ["broken.mp4", "empty.webm"]
    assert main(args) == 1  # only the bad files are tried again, and their records replaced
    assert "skipped 6 already in" in capsys.readouterr().err
    lines = _lines(out)
    assert len(lines) == 8 and len({r["video"] for r in lines}) == 8  # one record per video
    _video(root / "class0", "broken.mp4", colour=0, frames=12)  # the failure fixed: its error replaced
    assert main(args) == 1
    lines = _lines(out)
    assert len(lines) == 8 and [Path(r["video"]).name for r in lines if "error" in r] == ["empty.webm"]
    assert not out.with_name("results.jsonl.lock").exists()


def test_a_second_writer_of_a_results_file_is_refused(models, tmp_path: Path, capsys) -> None:
    """Two `predict --out` on one file: the second is refused before any work; the lock dies with its
    holder (a kill -9 leaves nothing stale)."""
    root, _ = _folder(tmp_path)
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen(  # a real second process holding the file, as a running predict does
        [sys.executable, "-c", f"from sevnet.deploy.batch import ResultsFile; f = ResultsFile({str(out)!r}); "
         "print('locked', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = ["predict", str(root), "--recursive", "--checkpoint", str(models["torch"]), "--out", str(out)]
        assert main([*args, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{out}: sevnet predict (pid {holder.pid} on " in err and "is writing to it" in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main([*args, "--no-progress"]) == 1  # the killed holder's lock is gone with it
    assert len(_lines(out)) == 8


def _lines_tolerant(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def test_folder_inputs_and_frame_folders(models, tmp_path: Path, capsys) -> None:
    from _videos import write_frame_folder

    from sevnet.deploy.batch import expand_inputs

    root, good = _folder(tmp_path)
    with pytest.raises(ValueError, match="add --recursive"):
        expand_inputs([root])  # only class folders at the top level
    assert main(["predict", str(root), "--checkpoint", str(models["torch"])]) == 2
    assert "add --recursive" in capsys.readouterr().err
    assert expand_inputs([root / "class0"]) == [root / "class0" / "broken.mp4", *sorted((root / "class0").glob("v*"))]
    frames = write_frame_folder(tmp_path / "frames" / "clip1", num_frames=12)
    assert expand_inputs([tmp_path / "frames"], recursive=True) == [frames]
    assert expand_inputs([frames]) == [frames]
    assert main(["predict", str(frames), str(good[0]), "--checkpoint", str(models["torch"]), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["video"] for r in results] == [str(frames), str(good[0])] and all("top" in r for r in results)

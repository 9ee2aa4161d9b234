"""Issue 13, untrusted artifacts: exported-model integrity, checkpoint metadata checked against the
tensors before a model is built, control characters escaped, bad files named in messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _scenes import ColourStub, meta_for, tiny_checkpoint

import sevnet
from sevnet.deploy.runtime import ModelFileError, read_sidecar, sidecar_path, write_sidecar
from sevnet.engine import CheckpointError, load_model


def _stub_onnx(path: Path, scale: float) -> Path:
    torch.onnx.export(ColourStub(scale), (torch.randn(1, 3, 8, 32, 32),), str(path), input_names=["clip"],
                      output_names=["logits"], dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False, opset_version=17)  # fmt: skip
    return path


# --- item 7: the sidecar records SHA-256 of the model files and class names; load verifies -------
def test_exported_model_files_and_class_names_are_verified_against_the_sidecar(tmp_path: Path) -> None:
    model = _stub_onnx(tmp_path / "m.onnx", 8.0)
    (tmp_path / "m.xml").write_text("<net/>")  # stand-ins for an OpenVINO IR: the check is on the bytes
    (tmp_path / "m.bin").write_bytes(b"weights of m")
    write_sidecar(model, meta_for())
    (tmp_path / "other").mkdir()
    other = _stub_onnx(tmp_path / "other" / "m.onnx", -8.0)
    (tmp_path / "other" / "m.bin").write_bytes(b"weights of another model")
    assert sevnet.load(model).classes == ["red", "green", "blue"]
    assert read_sidecar(tmp_path / "m.xml")["class_names"] == ["red", "green", "blue"]
    sidecar = json.loads(sidecar_path(model).read_text())
    assert set(sidecar["files"]) == {"m.onnx", "m.xml", "m.bin"} and len(sidecar["class_names_sha256"]) == 64

    (tmp_path / "m.bin").write_bytes((tmp_path / "other" / "m.bin").read_bytes())  # another model's weights
    with pytest.raises(ModelFileError, match=r"m.bin: SHA-256 differs from the one m.sevnet.json recorded"):
        sevnet.load(tmp_path / "m.xml")
    model.write_bytes(other.read_bytes())
    with pytest.raises(ModelFileError, match=r"m.onnx: SHA-256 differs"):
        sevnet.load(model)

    write_sidecar(model, meta_for())  # consistent again, then the labels are edited by hand
    sidecar = json.loads(sidecar_path(model).read_text())
    sidecar["class_names"] = ["red", "green", "\x1b[2Jblue"]
    sidecar_path(model).write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match=r"m.sevnet.json: class_names differ from those recorded"):
        sevnet.load(model)
    del sidecar["files"]
    sidecar_path(model).write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match=r"m.sevnet.json: no integrity record"):
        sevnet.load(model)


# --- item 9: metadata checked against the tensors before a model is built -------------------------
def test_checkpoint_claiming_a_million_classes_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file, save_file

    ckpt = tiny_checkpoint(tmp_path / "real.safetensors")
    from safetensors import safe_open

    with safe_open(str(ckpt), framework="pt") as f:
        header = f.metadata()
    meta = json.loads(header["meta"])
    meta["num_classes"], meta["class_names"] = 10**6, [f"c{i}" for i in range(10**6)]
    save_file(load_file(str(ckpt)), str(tmp_path / "evil.safetensors"), metadata={**header, "meta": json.dumps(meta)})
    built = []
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", lambda self: built.append(self.weight.device.type))
    with pytest.raises(CheckpointError, match=r"evil.safetensors: its metadata .*1000000 classes.* fc.weight of shape"):
        load_model(tmp_path / "evil.safetensors")
    assert built == ["meta"]  # only the skeleton on the meta device: no 10^6-row classifier allocated


# --- item 10: control characters in class names are escaped on a terminal ------------------------
def test_control_characters_in_labels_and_messages_are_escaped(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from test_cli_errors import _verb_raising

    from sevnet import cli
    from sevnet.commands.predict import _format
    from sevnet.display import printable

    line = _format({"video": "v\x1b]0;x\x07.mp4", "top": [{"label": "\x1b[2J\x1b[31mred\u202e", "score": 0.5}]}, 1)
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line
    assert "\\x1b[2J\\x1b[31mred\\u202e (50.0%)" in line
    assert printable("a\nb", keep_newlines=True) == "a\nb" and printable("a\nb") == "a\\x0ab"
    _verb_raising(monkeypatch, CheckpointError("x.safetensors: unknown class '\x1b[31m'\nsecond line"))
    assert cli.main(["profile"]) == 2
    assert capsys.readouterr().err == "sevnet profile: error: x.safetensors: unknown class '\\x1b[31m'\nsecond line\n"


# --- item 12: messages that name the file ----------------------------------------------------------
def test_bad_files_are_named_in_the_message(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from sevnet.data import DataConfig, build_dataset
    from sevnet.data.annotations import AnnotationError
    from sevnet.engine.evaluate import NoEvaluationSampleError, compute_metrics

    (tmp_path / "something-something-v2-labels.json").write_text('{"Pushing": "0",}')
    with pytest.raises(AnnotationError, match=r"something-something-v2-labels.json:1: invalid JSON"):
        build_dataset(DataConfig(format="ssv2", root=str(tmp_path)), "train", train=True)
    (tmp_path / "train_list.txt").write_bytes("a.mp4 0\nb\xe9.mp4 1\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match=r"train_list.txt:2: not UTF-8 text"):
        build_dataset(DataConfig(format="video_list", root=str(tmp_path), num_classes=2), "train", train=True)
    ckpt = tiny_checkpoint(tmp_path / "c.safetensors")
    save_file(load_file(str(ckpt)), str(ckpt), metadata={"format": "sevnet-checkpoint/2", "meta": "{not json"})
    with pytest.raises(CheckpointError, match=r"c.safetensors: header field 'meta' is not valid JSON"):
        load_model(ckpt)
    model = _stub_onnx(tmp_path / "m.onnx", 8.0)
    sidecar_path(model).write_text("{broken")
    with pytest.raises(ModelFileError, match=r"m.sevnet.json: not a valid metadata file"):
        sevnet.load(model)
    with pytest.raises(NoEvaluationSampleError, match=r"no evaluation sample could be loaded \(1 failed: v/x.mp4: "):
        compute_metrics(torch.empty(0), torch.empty(0), False, [("v/x.mp4", "v/x.mp4: empty file")])


# --- issue 25 item 2: bad weights are refused by name, never silent garbage -----------------------
def _altered(ckpt: Path, out: Path, change) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(ckpt), framework="pt") as f:
        header = f.metadata()
    tensors = load_file(str(ckpt))
    change(tensors)
    save_file(tensors, str(out), metadata=header)
    return out


def _nan(t: dict) -> None:
    t["model.fc.weight"][1, 3] = float("nan")


def _int8(t: dict) -> None:
    for k, v in list(t.items()):
        if k.startswith("model.") and v.is_floating_point():
            t[k] = (v * 10).clamp(-127, 127).to(torch.int8)


BAD_WEIGHTS = {
    "nan": (_nan, r"not finite \(NaN/inf\) in fc.weight \(1 of 192 values\)"),
    "inf": (
        lambda t: t["model.head_conv.conv.weight"].view(-1)[:2].fill_(float("-inf")),
        r"not finite .*head_conv.conv.weight \(2 of",
    ),
    "int8": (_int8, r"wrong type .*is torch.int8, the model's is torch.float32"),
    "extra model tensor": (
        lambda t: t.update({"model.extra.weight": torch.ones(3)}),
        r"the model does not have: extra",
    ),
    "extra tensor": (lambda t: t.update({"payload": torch.ones(3)}), r"tensors sevnet never writes: payload"),
}


@pytest.mark.parametrize("kind", list(BAD_WEIGHTS))
def test_bad_weights_are_refused_by_name_from_the_cli_and_the_api(tmp_path: Path, kind: str, capsys) -> None:
    from _videos import write_video

    from sevnet.cli import main

    change, message = BAD_WEIGHTS[kind]
    bad = _altered(tiny_checkpoint(tmp_path / "good.safetensors"), tmp_path / "bad.safetensors", change)
    video = write_video(tmp_path / "v.mp4", num_frames=12)
    with pytest.raises(CheckpointError, match=r"bad.safetensors: .*" + message):
        sevnet.load(bad)
    assert main(["predict", str(video), "--checkpoint", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert "bad.safetensors" in err and "nan" not in out.lower()
    assert main(["export", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m.onnx").exists()


def test_non_finite_outputs_fail_predict_and_exports_self_check(tmp_path: Path, capsys) -> None:
    """Finite weights whose logits overflow (float32 max is 3.4e38): predict refuses the output instead
    of writing "score": NaN, and export's own check fails instead of reporting an error of 0.0."""
    from _videos import write_video

    from sevnet.cli import main
    from sevnet.deploy.export import ExportMismatchError, export_checkpoint

    def overflow(t: dict) -> None:
        t["model.fc.weight"].fill_(3e38)  # ReLU features >= 0: any above ~0.1 overflows to inf
        t["model.fc.bias"].fill_(3e38)

    bad = _altered(tiny_checkpoint(tmp_path / "good.safetensors"), tmp_path / "big.safetensors", overflow)
    video = write_video(tmp_path / "v.mp4", num_frames=12)
    out_file = tmp_path / "r.jsonl"
    assert main(["predict", str(video), "--checkpoint", str(bad), "--out", str(out_file)]) == 2
    assert "big.safetensors: its output holds NaN/inf" in capsys.readouterr().err
    assert not out_file.exists() or "NaN" not in out_file.read_text()
    with pytest.raises(ModelFileError, match="output holds NaN/inf"):
        sevnet.load(bad).predict(video)
    with pytest.raises(ExportMismatchError, match=r"PyTorch output holds NaN/inf"):
        export_checkpoint(bad, "onnx", tmp_path / "m")

"""`sevnet demo --quick`: every step of the main job runs end to end and writes every report file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _extras import has_module

from sevnet.cli import main


def test_quick_demo_writes_every_report_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "temporal check" in printed and "frames reversed" in printed
    for name in ("metrics.json", "training_curves.png", "confusion_matrix.png", "samples.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 200, name
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["temporal_check"]) == {"forward", "reversed", "shuffled"}
    assert 0 <= report["top1"] <= 1 and report["gmacs"] > 0 and report["params_m"] > 0
    assert Path(report["checkpoint"]).is_file()

    # The demo's checkpoint goes straight into the deployment flow (synthetic clips keep their size).
    if not has_module("nncf") or not has_module("openvino"):
        argv = ["quantize", report["checkpoint"], "--calib", str(out / "run" / "config.yaml")]
        assert main(argv) == 2  # without the deploy extra: one line saying how to install it
        assert "pip install 'sevnet[deploy]'" in capsys.readouterr().err
        pytest.skip("the deploy extra (openvino, nncf) is not installed")
    config = out / "run" / "config.yaml"
    assert config.is_file()
    argv = ["quantize", report["checkpoint"], "--calib", str(config), "--calib-clips", "4", "--eval-limit", "8",
            "--max-drop", "100", "--json"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    quantized = json.loads(printed[printed.index("{") :])
    assert quantized["clips"] == 8 and Path(quantized["int8_model"]).is_file()

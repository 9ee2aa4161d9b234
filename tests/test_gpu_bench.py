"""benchmarks/gpu_bench.py in its quick mode on the CPU: every table it promises, finite figures.

Run as a subprocess (as scripts/gpu_check.sh runs it): the benchmark turns cudnn.benchmark on and
seeds the global RNG, which must not leak into other tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sevnet.models import list_models

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_quick_mode_on_the_cpu_fills_every_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _run("--quick", "--device", "cpu", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    have_x3d = "x3d_xs" in list_models()
    assert "| XS | fp32, channels-last, eager | 8x112x112 | " + ("4x160x160" if have_x3d else "n/a") in text
    assert "| sevnet_xs (2 clips) |" in text and ("| x3d_xs (2 clips) |" in text) == have_x3d
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    keys = ["sevnet_train", "sevnet_infer"] + (
        ["x3d_train", "x3d_infer", "train_ratio", "infer_ratio"] if have_x3d else []
    )
    assert all(math.isfinite(row[k]) and row[k] > 0 for k in keys), row
    assert row["sevnet_train_mib"] is None  # peak GPU memory: none on a CPU
    for check in result["agreement"]:
        assert math.isfinite(check["max_rel_error"]) and 0 <= check["top1_agreement"] <= 1 and check["ok"]
    rows = result["e2e"]
    if "skipped" in rows[0]:  # a GPU machine with a sevnet that cannot yet pin the Trainer to the CPU
        assert torch.cuda.is_available() and "train.device" in rows[0]["skipped"]
        return
    assert [e["data"] for e in rows] == [
        "webm/VP9 as released",
        "prepared MJPEG 182",
        "prepared MJPEG 182, data.repeats=2",
    ]
    assert "| SEVNet-S, training on cpu" in text and "| 8x112x112 | 4 / " in text
    for e2e in rows:
        assert all(math.isfinite(e2e[k]) and e2e[k] > 0 for k in ("loader_train_clips_per_s", "model_only_clips_per_s"))
        assert e2e["fraction"] == pytest.approx(e2e["loader_train_clips_per_s"] / e2e["model_only_clips_per_s"])


def test_bad_arguments_say_what_is_wrong() -> None:
    done = _run("--sizes", "xs,xl", "--device", "cpu", timeout=120)
    assert done.returncode != 0 and "--sizes: unknown ['xl']" in done.stderr

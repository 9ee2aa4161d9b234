"""8-bit post-training static quantization with OpenVINO NNCF, checked for accuracy.

Why NNCF on OpenVINO: measured here (docs/deployment.md), ONNX Runtime's int8 (QDQ) 3D
convolutions fall back to float and gain no speed, and PyTorch's eager int8 flow has no quantized
Conv3d kernels on x86; OpenVINO runs int8 3D convolutions natively. Calibration clips come from
the training set with evaluation preprocessing; the report puts float32 and int8 side by side
(size, latency at batch 1 and a throughput batch, accuracy) and fails past an accuracy threshold.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sevnet.data import DataConfig, build_dataset, build_loader
from sevnet.engine.card import ModelCard
from sevnet.engine.checkpoint import load_model
from sevnet.engine.config import ExperimentConfig
from sevnet.engine.distributed import init_distributed
from sevnet.engine.evaluate import NoEvaluationSampleError, predict_loader
from sevnet.errors import InputError, SevnetError
from sevnet.extras import require
from sevnet.timing import median_seconds

from .export import export_checkpoint
from .runtime import Runner, _model_files, openvino_runner, read_sidecar, sidecar_path, torch_runner, write_sidecar


class QuantizationAccuracyError(SevnetError, RuntimeError):
    """int8 lost more accuracy than allowed."""


def calibration_clips(cfg: DataConfig, count: int) -> list[np.ndarray]:
    """``count`` training clips (first evaluation view each), spread over the training set; says so
    when it has fewer (a small training set, or clips that could not be loaded)."""
    dataset = build_dataset(cfg, "train", train=False)
    picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int)
    clips = []
    for i in dict.fromkeys(picks.tolist()):
        item = dataset[i]
        if "error" not in item:
            clips.append(item["clip"][:1].numpy())
    if not clips:
        raise NoEvaluationSampleError("no calibration clip could be loaded from the training set")
    if len(clips) < count:
        why = f"the training set has {len(dataset)} clips" if len(dataset) < count else "some could not be loaded"
        print(f"note: calibrating on {len(clips)} clips, not the {count} asked ({why})", file=sys.stderr, flush=True)
    return clips


class _NoCudaRuntimeNote(logging.Filter):
    """Drops PyTorch's "No CUDA runtime is found, using CUDA_HOME=..." warning, which NNCF's import of
    the extension loader logs on a CPU-only machine with a CUDA toolkit installed: noise for int8 on CPU."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


def import_nncf() -> Any:
    """``nncf``, with the CUDA note above silenced (the filter stays: the loader may be imported later)."""
    logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeNote())
    nncf = require("nncf", "int8 quantization")

    return nncf


def quantize_openvino(
    xml_path: str | Path, data: list[Any], out_xml: str | Path, ignored_scope: Callable[[Any], list[str]] | None = None
) -> Path:
    """NNCF post-training static int8 (performance preset) of an OpenVINO model, calibrated on ``data``
    (its inputs: clips, or a step model's input dicts). ``ignored_scope(model)`` names the nodes to keep
    in float (e.g. a stream step's running sums)."""
    ov = require("openvino", "int8 quantization")

    nncf = import_nncf()
    model = ov.Core().read_model(str(xml_path))
    extra = {}
    if ignored_scope is not None:
        extra["ignored_scope"] = nncf.IgnoredScope(names=ignored_scope(model), validate=False)
    quantized = nncf.quantize(
        model, nncf.Dataset(data), subset_size=len(data), preset=nncf.QuantizationPreset.PERFORMANCE, **extra
    )
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return Path(out_xml)


def model_bytes(xml_path: Path) -> int:
    return xml_path.stat().st_size + xml_path.with_suffix(".bin").stat().st_size


def latency_s(runner: Runner, clip_shape: tuple[int, ...], batch: int, repeats: int = 5) -> float:
    x = np.random.default_rng(0).standard_normal((batch, *clip_shape)).astype(np.float32)
    return median_seconds(lambda: runner(x), repeats)


class _Head(Dataset):
    """The first ``n`` items of a dataset (keys pass through: the loader's (index, epoch) pairs)."""

    def __init__(self, dataset: Any, n: int) -> None:
        self.dataset, self.n, self.multi_label = dataset, n, dataset.multi_label

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Any) -> Any:
        return self.dataset[key]


def runner_model(runner: Runner) -> Callable[[torch.Tensor], torch.Tensor]:
    """A runner as the model ``predict_loader`` calls: float (N, 3, T, H, W) tensor in, logits out."""
    return lambda clip: torch.from_numpy(np.asarray(runner(clip.numpy()), np.float32))


def accuracy_pair(
    cfg: ExperimentConfig, fp32: Runner, int8: Runner, limit: int | None = None, dataset: Any = None
) -> dict[str, float]:
    """Top-1 of both models on the evaluation split (``dataset`` if already built: its frame cache is
    built once), scored like ``sevnet eval`` (``predict_loader``: class scores averaged over the views),
    and their top-1 agreement."""
    if dataset is None:
        dataset = build_dataset(cfg.data, cfg.eval.split, train=False)
    if limit is not None and limit < len(dataset):
        dataset = _Head(dataset, limit)
    loader = build_loader(dataset, cfg.eval.batch_size, train=False, cfg_data=cfg.data)
    info = init_distributed()
    preds = {}
    for key, runner in (("fp32", fp32), ("int8", int8)):
        _, probs, targets, _ = predict_loader(runner_model(runner), loader, dataset.multi_label, info)
        if len(targets) == 0:
            raise NoEvaluationSampleError("no evaluation clip could be loaded")
        preds[key] = probs.argmax(1)
    truth = targets if targets.ndim == 1 else targets.argmax(1)
    return {
        "fp32_top1": (preds["fp32"] == truth).float().mean().item(),
        "int8_top1": (preds["int8"] == truth).float().mean().item(),
        "top1_agreement": (preds["fp32"] == preds["int8"]).float().mean().item(),
        "clips": len(truth),
    }


def quantize_checkpoint(
    checkpoint: str | Path,
    cfg: ExperimentConfig,
    out: str | Path | None = None,
    calib_clips: int = 64,
    max_drop: float = 1.0,
    throughput_batch: int = 8,
    eval_limit: int | None = None,
) -> dict[str, Any]:
    """Export (float32 OpenVINO), quantize to int8, compare side by side; raise past ``max_drop`` points."""
    if calib_clips < 1:
        raise InputError(f"--calib-clips must be >= 1, got {calib_clips}")
    load_model(checkpoint)  # a bad checkpoint, then missing data, are found before anything is written
    clips = calibration_clips(cfg.data, calib_clips)
    evaluation = build_dataset(cfg.data, cfg.eval.split, train=False)  # found before anything is written
    base = Path(out) if out else Path(checkpoint).with_suffix("")
    exported = export_checkpoint(checkpoint, "openvino", base)
    fp32_xml = Path(exported["openvino"])
    int8_xml = base.with_name(base.name + "-int8.xml")
    quantize_openvino(fp32_xml, clips, int8_xml)
    card = ModelCard.from_meta(read_sidecar(fp32_xml))
    write_sidecar(int8_xml, card.quantized_as("int8 (NNCF post-training, static)"))
    fp32, int8 = openvino_runner(fp32_xml), openvino_runner(int8_xml)
    shape = (3, *exported["clip_shape"])
    model = load_model(checkpoint)[0]
    eager = torch_runner(model)  # the baseline a user starts from
    report: dict[str, Any] = {
        "eager_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
        "eager_latency_b1_s": latency_s(eager, shape, 1),
        "eager_clips_per_s": throughput_batch / latency_s(eager, shape, throughput_batch),
        "fp32_model": str(fp32_xml),
        "int8_model": str(int8_xml),
        "fp32_mb": model_bytes(fp32_xml) / 2**20,
        "int8_mb": model_bytes(int8_xml) / 2**20,
        "fp32_latency_b1_s": latency_s(fp32, shape, 1),
        "int8_latency_b1_s": latency_s(int8, shape, 1),
        "fp32_clips_per_s": throughput_batch / latency_s(fp32, shape, throughput_batch),
        "int8_clips_per_s": throughput_batch / latency_s(int8, shape, throughput_batch),
        "throughput_batch": throughput_batch,
        "calibration_clips": len(clips),
        **accuracy_pair(cfg, fp32, int8, eval_limit, evaluation),
    }
    return check_drop(report, max_drop, "int8", int8_xml)


def check_drop(report: dict[str, Any], max_drop: float, what: str, model: Path | None = None) -> dict[str, Any]:
    """``report`` (from ``accuracy_pair``) with ``top1_drop_points`` and the gate's resolution (one clip,
    in points); past ``max_drop`` points, a QuantizationAccuracyError naming both accuracies, after
    removing the rejected ``model`` (its .xml, .bin and sidecar): a model that failed its gate must not
    be left to load and predict as if it had passed."""
    report["top1_drop_points"] = 100 * (report["fp32_top1"] - report["int8_top1"])
    report["gate_resolution_points"] = 100 / max(1, report["clips"])
    if report["top1_drop_points"] > max_drop:
        removed = ""
        if model is not None:
            for path in (*_model_files(model), sidecar_path(model)):
                path.unlink(missing_ok=True)
            removed = f"; the rejected model {model} was removed"
        coarse = report["gate_resolution_points"] > max_drop
        raise QuantizationAccuracyError(
            f"{what} top-1 {report['int8_top1']:.2%} vs float32 {report['fp32_top1']:.2%}: a drop of "
            f"{report['top1_drop_points']:.2f} points > --max-drop {max_drop}{removed}. On {report['clips']} "
            f"evaluation clips one clip is {report['gate_resolution_points']:.2f} points"
            + (": this gate fails on a single clip; evaluate more clips or raise --max-drop" if coarse else "")
        )
    return report


def format_quantize_report(r: dict[str, Any]) -> str:
    batch = r["throughput_batch"]
    rows = [f"{'':<24}{'size (MB)':>10}{'latency b=1 (ms)':>18}{f'clips/s b={batch}':>14}{'vs eager':>10}{'top-1':>9}"]
    for label, key, top1 in (
        ("pytorch eager float32", "eager", None),
        ("openvino float32", "fp32", r["fp32_top1"]),
        ("openvino int8", "int8", r["int8_top1"]),
    ):
        rows.append(
            f"{label:<24}{r[key + '_mb']:>10.2f}{r[key + '_latency_b1_s'] * 1e3:>18.1f}{r[key + '_clips_per_s']:>14.1f}"
            f"{r[key + '_clips_per_s'] / r['eager_clips_per_s']:>9.2f}x{'' if top1 is None else f'{top1:>9.2%}':>9}"
        )
    rows.append(
        f"CPU; top-1 on {r['clips']} evaluation clips (eager float32 = OpenVINO float32 within the export "
        f"tolerance); int8 agrees with float32 on {r['top1_agreement']:.1%} of them "
        f"(drop {r['top1_drop_points']:.2f} points)."
    )
    return "\n".join(rows)

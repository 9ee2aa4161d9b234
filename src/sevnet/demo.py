"""``sevnet demo``: train SEVNet-XS from scratch on the built-in temporal-reasoning benchmark on a
laptop CPU, evaluate it, check that it relies on temporal order, and write a report folder.

Every class of the benchmark has a partner that is the same clip played backwards, so a model that
ignores frame order cannot beat 50% within a pair. Evaluating on reversed clips therefore tests
whether the temporal convolutions are used: accuracy collapses (the model predicts the partner).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sevnet.data import DataConfig, DataFormat, build_loader
from sevnet.data.synthetic import CLASSES, PAIRS, SyntheticVideoDataset, build_synthetic_dataset, partner
from sevnet.device import describe, resolve_device
from sevnet.engine import train
from sevnet.engine.config import EvalConfig, ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
from sevnet.engine.distributed import init_distributed
from sevnet.engine.evaluate import compute_metrics, predict_loader, save_confusion_png
from sevnet.models import count_gmacs, count_params


def demo_config(out_dir: Path, synthetic: dict[str, Any], quick: bool = False, seed: int = 0,
                epochs: int | None = None, minutes: float = 0.0, device: str = "auto") -> ExperimentConfig:  # fmt: skip
    """The demo's settings: SEVNet-XS on 8 frames of 64x64, about 5 minutes of training on 2 cores
    (``quick``: one epoch, evaluated), on ``device`` (train.device)."""
    cfg = ExperimentConfig(
        model=ModelConfig(name="sevnet_xs", dropout=0.2),
        # clips are in memory: no decoding to hide, and the cores go to training
        data=DataConfig(format=DataFormat.synthetic, num_frames=8, num_workers=0, synthetic=synthetic),
        optim=OptimConfig(lr=0.05, base_batch=16, warmup_epochs=0.3),
        train=TrainConfig(batch_size=16, epochs=8, out_dir=str(out_dir), seed=seed, max_minutes=minutes, device=device),
        eval=EvalConfig(batch_size=32, every_epochs=2),
    )
    if quick:
        cfg = replace(cfg, train=replace(cfg.train, epochs=1), eval=replace(cfg.eval, every_epochs=1))
    if epochs:
        cfg = replace(cfg, train=replace(cfg.train, epochs=epochs))
    return cfg


def run_demo(
    out_dir: str | Path = "reports/demo",
    quick: bool = False,
    seed: int = 0,
    epochs: int | None = None,
    minutes: float = 0.0,
    num_train: int = 2400,
    num_val: int = 480,
    size: int = 64,
    device: str = "auto",
) -> dict[str, Any]:
    """Train, evaluate, run the temporal check, write the report; returns the report dict. ``device``:
    where it trains and evaluates (auto: a GPU when PyTorch sees one)."""
    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        num_train, num_val, size = 96, 48, 32
    synthetic = {"num_train": num_train, "num_val": num_val, "size": size, "seed": seed}
    cfg = demo_config(out / "run", synthetic, quick, seed, epochs, minutes, device)
    where = resolve_device(device, key="--device")  # refused here, before the benchmark is built
    print(
        f"sevnet demo: {len(CLASSES)} classes in {len(PAIRS)} time-reversed pairs, {num_train} training and "
        f"{num_val} held-out clips of {cfg.data.num_frames}x{size}x{size}; training {cfg.model.name} from "
        f"scratch for {cfg.train.epochs} epochs on {describe(where)}",
        flush=True,
    )
    result = train(cfg, overwrite=True)  # a rerun replaces the previous one
    model = result.model.eval()
    val = build_synthetic_dataset(cfg.data, "val", train=False)
    checks, (main_metrics, main_probs, main_targets) = temporal_check(model, val, cfg)
    report = _report(cfg, result, model, checks, main_metrics, num_train, num_val, describe(where))
    _save_figures(out, val, main_probs, main_targets, result.out_dir)
    report["wall_time_s"] = time.time() - started
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print(format_report(report, out))
    if quick:
        print("(--quick is a smoke test of every step on a few clips for one epoch: accuracy near chance, "
              "8.3%, is expected; run `sevnet demo` for the real figures)")  # fmt: skip
    return report


def _report(cfg: ExperimentConfig, result: Any, model: torch.nn.Module, checks: dict[str, dict[str, float]],
            main_metrics: dict[str, float], num_train: int, num_val: int, device: str) -> dict[str, Any]:  # fmt: skip
    """metrics.json, less the wall time: the forward clips' metrics, the temporal check and the costs."""
    t, h, w = cfg.data.num_frames, cfg.data.eval_crop, cfg.data.eval_crop
    return {
        "model": cfg.model.name,
        "input": f"{t}x{h}x{w}",
        "top1": main_metrics["top1"],
        "top5": main_metrics["top5"],
        "mean_class_accuracy": main_metrics["mean_class_accuracy"],
        "chance": 1 / len(CLASSES),
        "temporal_check": checks,
        "gmacs": count_gmacs(model, (1, 3, t, h, w)),
        "params_m": count_params(model) / 1e6,
        "train_clips_per_s": result.train_clips_per_s,
        "inference_clips_per_s": checks["forward"]["inference_clips_per_s"],
        "train_time_s": result.train_time_s,
        "epochs": cfg.train.epochs,
        "steps": result.steps,
        "num_train": num_train,
        "num_val": num_val,
        "threads": torch.get_num_threads(),
        "device": device,
        "checkpoint": str(result.checkpoint),
    }


def _save_figures(
    out: Path, val: SyntheticVideoDataset, probs: torch.Tensor, targets: torch.Tensor, run_dir: Path
) -> None:
    """The confusion matrix, a strip of sample clips with their predictions, and the run's training curves."""
    save_confusion_png(probs, targets, CLASSES, out / "confusion_matrix.png")
    save_sample_strip(val, probs.argmax(1), out / "samples.png")
    curves = run_dir / "training_curves.png"
    if curves.is_file():
        (out / "training_curves.png").write_bytes(curves.read_bytes())


def temporal_check(
    model: torch.nn.Module, val: SyntheticVideoDataset, cfg: ExperimentConfig
) -> tuple[dict[str, dict[str, float]], tuple[dict[str, float], torch.Tensor, torch.Tensor]]:
    """Accuracy on held-out clips played forward, reversed and shuffled, and how often the model
    predicts a clip's time-reversed partner; with the forward clips' (metrics, scores, targets)."""
    info = init_distributed(cfg.train.device)
    loader = build_loader(
        val, cfg.eval.batch_size, train=False, cfg_data=cfg.data, pin_memory=info.device.type == "cuda"
    )
    checks: dict[str, dict[str, float]] = {}
    for order in ("forward", "reversed", "shuffled"):
        val.frame_order = order
        t0 = time.time()
        _, probs, targets, _ = predict_loader(model, loader, False, info)
        elapsed = time.time() - t0
        metrics = compute_metrics(probs, targets, multi_label=False)
        partners = torch.tensor([partner(int(t)) for t in targets])
        checks[order] = {
            "top1": metrics["top1"],
            "predicted_time_reversed_partner": (probs.argmax(1) == partners).float().mean().item(),
            "inference_clips_per_s": len(targets) / elapsed,
        }
        if order == "forward":
            forward = (metrics, probs, targets)
    val.frame_order = "forward"
    return checks, forward


def save_sample_strip(dataset: Any, preds: torch.Tensor, path: Path, per_pair: int = 1) -> None:
    """One held-out clip per class pair: its frames in a row, titled with true and predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [i for i in range(len(dataset)) if dataset.labels[i] % 2 == 0][: len(PAIRS) * per_pair]
    frames = dataset.clips[rows[0]].shape[0]
    fig, axes = plt.subplots(len(rows), frames, figsize=(frames * 1.1, len(rows) * 1.35), squeeze=False)
    for r, i in enumerate(rows):
        for f in range(frames):
            ax = axes[r][f]
            ax.imshow(dataset.clips[i][f])
            ax.set_axis_off()
        ok = "ok" if int(preds[i]) == int(dataset.labels[i]) else "WRONG"
        axes[r][0].set_title(
            f"true: {CLASSES[dataset.labels[i]]}  |  predicted: {CLASSES[int(preds[i])]} ({ok})",
            fontsize=7,
            loc="left",
        )
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.4)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_report(r: dict[str, Any], out: Path) -> str:
    c = r["temporal_check"]
    lines = [
        "",
        f"{'model':<12}{'input':>10}{'top-1':>8}{'GMACs*':>8}{'params':>9}{'train clips/s':>15}{'infer clips/s':>15}",
        f"{r['model']:<12}{r['input']:>10}{r['top1']:>8.1%}{r['gmacs']:>8.3f}{r['params_m']:>8.2f}M"
        f"{r['train_clips_per_s']:>15.1f}{r['inference_clips_per_s']:>15.1f}",
        f"* multiply-adds per clip; training as the log line says, inference float32 on {r['device']}. "
        f"Chance is {r['chance']:.1%}.",
        "",
        "temporal check (held-out clips; every class has a time-reversed partner class):",
        f"  frames in order   top-1 {c['forward']['top1']:.1%}",
        f"  frames reversed   top-1 {c['reversed']['top1']:.1%}   (predicts the reversed partner "
        f"{c['reversed']['predicted_time_reversed_partner']:.1%} of the time)",
        f"  frames shuffled   top-1 {c['shuffled']['top1']:.1%}",
        "",
        f"report: {out}/ (metrics.json, training_curves.png, confusion_matrix.png, samples.png); "
        f"wall time {r['wall_time_s'] / 60:.1f} min",
    ]
    return "\n".join(lines)

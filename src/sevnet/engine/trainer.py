"""The training loop: the paper's from-scratch recipe, one process or many (torchrun/DDP).

SGD + momentum, lr scaled linearly with the global batch, linear warm-up then cosine decay, per
step. Checkpoints (atomic, no pickle) at each epoch end and every ``ckpt_every_steps`` steps;
``resume`` continues from the last one mid-epoch: the sampler skips the batches already seen and
the RNG state is restored, so a resumed CPU run in deterministic mode is bit-identical.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevnet.data import SkipCounter, build_dataset, build_loader, to_data_config
from sevnet.models import create_model

from .checkpoint import load_training_state, save_checkpoint
from .config import to_container
from .distributed import DistInfo, all_reduce_sum, barrier, gather_objects, init_distributed
from .evaluate import compute_metrics, predict_loader

INFERENCE_KEYS = ("num_frames", "sampling", "frame_stride", "eval_scale", "eval_crop", "mean", "std",
                  "frame_template")  # fmt: skip


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class WorkerCrashError(RuntimeError):
    """A data-loading worker died (e.g. the decoder crashed); the message names what it was loading."""


def build_optimizer(model: nn.Module, cfg: Any, global_batch: int) -> torch.optim.SGD:
    """SGD; lr = cfg.optim.lr * global_batch / base_batch; no weight decay on BN and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    lr = cfg.optim.lr * global_batch / cfg.optim.base_batch
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
    )


def lr_factor(step: int, warmup_steps: int, total_steps: int, warmup_factor: float, min_factor: float) -> float:
    """Linear warm-up from ``warmup_factor`` to 1, then cosine decay to ``min_factor``."""
    if step < warmup_steps:
        return warmup_factor + (1 - warmup_factor) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _amp_dtype(cfg: Any, device: torch.device) -> torch.dtype | None:
    mode = cfg.train.amp
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False


def checkpoint_meta(cfg: Any, dataset: Any) -> dict[str, Any]:
    """Everything needed to rebuild the model and preprocess like evaluation, from the file alone."""
    data = asdict(to_data_config(cfg.data))  # resolved: e.g. synthetic clips' real crop size
    return {
        "model": cfg.model.name,
        "model_overrides": {"dropout": cfg.model.dropout, **to_container(cfg.model.overrides)},
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.classes),
        "multi_label": bool(dataset.multi_label),
        "data": {k: data[k] for k in INFERENCE_KEYS},
        "config": to_container(cfg),
    }


class _RunLog:
    """Rank-0 outputs: per-epoch CSV, TensorBoard scalars, LR history, curves PNG."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.out_dir, self.enabled = out_dir, enabled
        self.history: list[dict[str, Any]] = []
        self.lrs: list[float] = []
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))

    def step(self, step: int, loss: float, lr: float, every: int) -> None:
        self.lrs.append(lr)
        if self.tb is not None and step % max(every, 1) == 0:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def epoch(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        path = self.out_dir / "metrics.csv"
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        for key, value in row.items():
            if isinstance(value, float) and self.tb is not None:
                self.tb.add_scalar(f"epoch/{key}", value, row["epoch"])

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tb is not None:
            self.tb.close()
        if self.history:
            plot_curves(self.history, self.lrs, self.out_dir / "training_curves.png")


def plot_curves(history: list[dict[str, Any]], lrs: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [r["epoch"] for r in history]
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0].set_title("training loss")
    for key in ("train_top1", "val_top1", "val_mean_class_accuracy", "val_mAP"):
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            axes[1].plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=key)
    axes[1].set_title("accuracy")
    axes[1].legend(fontsize=7)
    axes[2].plot(lrs)
    axes[2].set_title("learning rate (per step)")
    for ax, label in zip(axes, ("epoch", "epoch", "step")):
        ax.set_xlabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(cfg: Any, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; returns final metrics, history, checkpoint paths and the model."""
    info = init_distributed()
    _seed_everything(cfg.train.seed, cfg.train.deterministic)
    out_dir = Path(cfg.train.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    last_ckpt = ckpt_dir / "last.safetensors"
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(_yaml(cfg))

    train_ds = build_dataset(cfg.data, "train", train=True)
    val_ds = _maybe_val_dataset(cfg)
    if hasattr(train_ds, "trace_dir"):
        train_ds.trace_dir = out_dir / ".loading"
    model = create_model(
        cfg.model.name,
        num_classes=train_ds.num_classes,
        dropout=cfg.model.dropout,
        **to_container(cfg.model.overrides),
    )
    meta = checkpoint_meta(cfg, train_ds)
    model = _prepare_model(model, cfg, info)
    amp_dtype = _amp_dtype(cfg, info.device)

    def autocast() -> Any:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(info.device.type, dtype=amp_dtype)

    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    loader = build_loader(train_ds, cfg.train.batch_size, train=True, cfg_data=cfg.data, distributed=info.distributed)
    val_loader = (
        build_loader(val_ds, cfg.eval.batch_size, train=False, cfg_data=cfg.data, distributed=info.distributed)
        if val_ds is not None
        else None
    )
    accum = cfg.train.grad_accum
    global_batch = cfg.train.batch_size * info.world_size * accum
    optimizer = build_optimizer(model, cfg, global_batch)
    batches_per_epoch = len(loader)
    steps_per_epoch = max(1, batches_per_epoch // accum)
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    warmup_steps = round(cfg.optim.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, warmup_steps, total_steps, cfg.optim.warmup_factor, cfg.optim.min_lr_factor),
    )
    criterion: nn.Module = (
        nn.BCEWithLogitsLoss()
        if train_ds.multi_label
        else nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    )

    start_epoch, start_batch, step = 0, 0, 0
    log = _RunLog(out_dir, info.is_main)
    if resume and last_ckpt.is_file():
        plain, tensors = load_training_state(last_ckpt, model, optimizer)
        scheduler.load_state_dict(plain["scheduler"])
        start_epoch, start_batch, step = plain["epoch"], plain["batch_in_epoch"], plain["step"]
        log.history, log.lrs = plain["history"], plain["lrs"]
        torch.set_rng_state(tensors["rng_cpu"])
        if info.is_main:
            print(f"resumed from {last_ckpt}: epoch {start_epoch}, batch {start_batch}, step {step}")
    elif resume and info.is_main:
        print(f"no checkpoint at {last_ckpt}; starting from scratch")

    def save(epoch: int, batch_in_epoch: int) -> None:
        if info.is_main:
            state = {
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "step": step,
                "scheduler": scheduler.state_dict(),
                "history": log.history,
                "lrs": log.lrs,
                "rng_cpu": torch.get_rng_state(),
            }
            save_checkpoint(last_ckpt, model, {**meta, "epoch": epoch, "step": step}, optimizer, state)
        barrier(info)

    skips = SkipCounter(cfg.data.max_skip_fraction)
    nonfinite_skipped = 0
    metrics: dict[str, Any] = {}
    started = time.time()
    clips_seen = 0
    done = step >= total_steps
    epoch = start_epoch
    position = (start_epoch, start_batch)
    for epoch in range(start_epoch, cfg.train.epochs):
        if done:
            break
        model.train()
        loader.sampler.set_epoch(epoch)
        first = start_batch if epoch == start_epoch else 0
        loader.sampler.start = first * cfg.train.batch_size
        bar = _progress(loader, info, cfg, epoch, first, batches_per_epoch)
        loss_sum = correct = seen = 0.0
        epoch_start = time.time()
        optimizer.zero_grad(set_to_none=True)
        try:
            for i, batch in enumerate(bar, start=first):
                empty = batch["clip"] is None
                n_empty, n_skipped, n_good = all_reduce_sum(
                    [float(empty), len(batch["skipped"]), 0 if empty else len(batch["clip"])], info
                )
                skips.add(0, batch["skipped"], total_loaded=int(n_good), total_skipped=int(n_skipped))
                if n_empty:
                    continue
                clip = batch["clip"].to(info.device, non_blocking=True)
                target = batch["target"].to(info.device, non_blocking=True)
                if cfg.train.channels_last == "on" or (
                    cfg.train.channels_last == "auto" and info.device.type == "cuda"
                ):
                    clip = clip.contiguous(memory_format=torch.channels_last_3d)
                last_micro = (i + 1) % accum == 0
                sync = contextlib.nullcontext() if last_micro or not info.distributed else model.no_sync()
                with sync:
                    with autocast():
                        logits = model(clip)
                        loss = criterion(logits.float(), target)
                    (finite,) = all_reduce_sum([float(torch.isfinite(loss).item())], info)
                    if finite < info.world_size:
                        if cfg.train.nan_policy == "skip":
                            nonfinite_skipped += 1
                            optimizer.zero_grad(set_to_none=True)
                            continue
                        where = f"epoch {epoch}, batch {i}, optimizer step {step}"
                        good = f"last good checkpoint: {last_ckpt}" if last_ckpt.is_file() else "no checkpoint yet"
                        raise NonFiniteLossError(
                            f"loss is {loss.item()} at {where}; stopping ({good}). Lower optim.lr, or set "
                            f"train.nan_policy=skip to skip such steps."
                        )
                    scaler.scale(loss / accum).backward()
                batch_size = len(clip)
                loss_sum += loss.item() * batch_size
                seen += batch_size
                clips_seen += batch_size * info.world_size
                if not train_ds.multi_label:
                    correct += (logits.argmax(1) == target).sum().item()
                if not last_micro:
                    continue
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                log.step(step, loss.item(), optimizer.param_groups[0]["lr"], cfg.train.log_every)
                if info.is_main and hasattr(bar, "set_postfix"):
                    elapsed = max(time.time() - epoch_start, 1e-6)
                    bar.set_postfix(
                        loss=f"{loss_sum / max(seen, 1):.3f}",
                        acc=f"{correct / max(seen, 1):.3f}",
                        clips_s=f"{seen * info.world_size / elapsed:.1f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                    )
                position = (epoch, i + 1)  # where a resume continues from
                if cfg.train.ckpt_every_steps and step % cfg.train.ckpt_every_steps == 0:
                    save(*position)
                if step >= total_steps or _out_of_time(cfg, started):
                    done = True
                    break
        except RuntimeError as err:
            if "DataLoader worker" in str(err):
                raise WorkerCrashError(_loading_report(out_dir / ".loading", err)) from err
            raise
        epoch_time = time.time() - epoch_start
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": None if train_ds.multi_label else correct / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "train_clips_per_s": seen * info.world_size / max(epoch_time, 1e-6),
            "epoch_time_s": epoch_time,
        }
        last_epoch = done or epoch + 1 == cfg.train.epochs
        every = cfg.eval.every_epochs
        if val_loader is not None and (last_epoch or (every and (epoch + 1) % every == 0)):
            _, probs, targets, skipped = predict_loader(model, val_loader, val_ds.multi_label, info, autocast)
            if info.is_main:
                metrics = compute_metrics(probs, targets, val_ds.multi_label)
                metrics["skipped"] = len(skipped)
                row |= {f"val_{k}": v for k, v in metrics.items() if k != "num_samples"}
        log.epoch(row)
        if info.is_main and cfg.train.progress:
            print(_epoch_line(row), flush=True)
        finished_epoch = not done or position == (epoch, batches_per_epoch)
        save(*((epoch + 1, 0) if finished_epoch else position))
    final = ckpt_dir / "model.safetensors"
    # Every rank's weights must be identical after DDP; a digest per rank makes that checkable.
    digests = gather_objects(weights_digest(model), info)
    if info.is_main:
        save_checkpoint(final, model, {**meta, "epoch": epoch + 1, "step": step, "metrics": metrics})
        log.close()
        summary = {"metrics": metrics, "steps": step, "skipped_samples": skips.num_skipped,
                   "nonfinite_steps_skipped": nonfinite_skipped, "world_size": info.world_size,
                   "weights_digest_per_rank": digests, "history": log.history}  # fmt: skip
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    barrier(info)
    return {
        "metrics": metrics,
        "history": log.history,
        "steps": step,
        "checkpoint": str(final),
        "last_checkpoint": str(last_ckpt),
        "out_dir": str(out_dir),
        "model": getattr(model, "module", model),
        "skipped": skips.skipped,
        "nonfinite_steps_skipped": nonfinite_skipped,
        "train_time_s": time.time() - started,
        "clips_seen": clips_seen,
    }


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in order: equal digests = bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for tensor in getattr(model, "module", model).state_dict().values():
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _yaml(cfg: Any) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg)


def _maybe_val_dataset(cfg: Any) -> Any:
    try:
        return build_dataset(cfg.data, cfg.eval.split, train=False)
    except FileNotFoundError as err:
        print(f"no validation set ({err}); training without evaluation")
        return None


def _prepare_model(model: nn.Module, cfg: Any, info: DistInfo) -> nn.Module:
    if cfg.train.sync_bn and info.distributed:
        if info.device.type != "cuda":
            raise ValueError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(info.device)
    if cfg.train.channels_last == "on" or (cfg.train.channels_last == "auto" and info.device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last_3d)
    if cfg.train.compile:
        model = torch.compile(model)
    if info.distributed:
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


def _out_of_time(cfg: Any, started: float) -> bool:
    minutes = getattr(cfg.train, "max_minutes", 0) or 0
    return bool(minutes) and time.time() - started > minutes * 60


def _progress(loader: Any, info: DistInfo, cfg: Any, epoch: int, first: int, total: int) -> Any:
    if not (info.is_main and cfg.train.progress):
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", initial=first, total=total, leave=False,
                dynamic_ncols=True)  # fmt: skip


def _epoch_line(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4f}"]
    for key in ("train_top1", "val_top1", "val_top5", "val_mean_class_accuracy", "val_mAP"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['train_clips_per_s']:.1f} clips/s")
    return " | ".join(parts)


def _loading_report(trace_dir: Path, err: Exception) -> str:
    loading = []
    if trace_dir.is_dir():
        loading = [p.read_text().strip() for p in sorted(trace_dir.glob("worker-*.txt"))]
    what = "; ".join(loading) if loading else "unknown (no trace)"
    return f"a data-loading worker died ({err}); workers were loading: {what}"

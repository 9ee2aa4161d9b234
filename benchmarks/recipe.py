"""Choose the small-data recipe by measurement: variants x datasets -> top-1, reversed top-1, clips/s.

Each dataset is a class-folder layout of real video files (``root/{train,val}/<class>/<video>``,
e.g. written by ``python tools/photo_motion.py``). Its clips are decoded once into memory,
so every variant sees the same data at in-memory speed; the training loop is the library's
recipe reduced to its parts (TSN segment sampling, scale jitter + random crop, AdamW or SGD,
label smoothing, warm-up + cosine), and each variant trains for the number of steps it would
reach in ``--minutes`` of this CPU: the budget times the variant's own training speed, measured
interleaved with the baseline's (so a slower variant is charged for being slower, and a busy
machine does not change the result).

    python benchmarks/recipe.py DATA_A DATA_B --variants base adamw stem3 --seeds 0 1 --minutes 6

Prints one table (variant x dataset: mean top-1 over seeds, its spread, reversed-frames top-1,
clips/s) and writes reports/recipe/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from sevnet.data.mirror import describe, mirror_labels
from sevnet.models import create_model
from sevnet.models.blocks import SEVModule
from sevnet.models.sevnet import difference_init
from sevnet.timing import train_steps_per_second

VIDEO_EXTS = {".webm", ".mp4", ".avi", ".mkv", ".mov"}
# name -> (model, create_model overrides, recipe overrides); recipe keys in RECIPE below.
SMALL = {"crop": 64, "scale": (64, 80), "eval_scale": 72}
NOZERO = {"stem_temporal_kernel": 3, "zero_init_last": False}
D1221 = NOZERO | {"stages": [(48, 24, 1), (96, 48, 2), (192, 96, 2), (384, 192, 1)]}
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "before": ("sevnet_xs", {"stem_temporal_kernel": 1, "zero_init_last": True}, {"optim": "sgd", "lr": 0.05}),
    "adamw": ("sevnet_xs", {"stem_temporal_kernel": 1, "zero_init_last": True}, {}),
    "adamw_nozero": ("sevnet_xs", {"stem_temporal_kernel": 1, "zero_init_last": False}, {}),
    "stem3": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True}, {}),
    "stem3_nozero": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": False}, {}),
    "stem3_gw16": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True, "group_width": 16}, {}),
    "stem3_nols": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True}, {"label_smoothing": 0.0}),
    "stem3_sgd": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True}, {"optim": "sgd", "lr": 0.05}),
    "stem3_t16": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True}, {"frames": 16}),
    "stem3_112": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True}, {"crop": 112, "scale": (112, 136)}),
    "x3d_xs": ("x3d_xs", {}, {}),
    # 8x64x64 clips: about 2.2x the clips per second of 8x96x96 (the prototype's regime)
    "stem3_64": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True}, SMALL),
    "stem3_nozero_64": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": False}, SMALL),
    "stem3_gw12_64": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": True, "group_width": 12}, SMALL),
    "stem3_nozero_gw12_64": (
        "sevnet_xs",
        {"stem_temporal_kernel": 3, "zero_init_last": False, "group_width": 12},
        SMALL,
    ),
    "nozero_lr4_64": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": False}, SMALL | {"lr": 4e-3}),
    "nozero_lr1_64": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": False}, SMALL | {"lr": 1e-3}),
    "nozero_b8_64": ("sevnet_xs", {"stem_temporal_kernel": 3, "zero_init_last": False}, SMALL | {"batch": 8}),
    "nozero_noreg_64": (
        "sevnet_xs",
        {"stem_temporal_kernel": 3, "zero_init_last": False},
        SMALL | {"dropout": 0.0, "label_smoothing": 0.0},
    ),
    # fewer blocks (stage depths 1-2-2-1 or 2-2-3-1 instead of 2-3-4-2) and wider spatial groups: more clips per minute
    "d1221_64": ("sevnet_xs", NOZERO | {"stages": [(48, 24, 1), (96, 48, 2), (192, 96, 2), (384, 192, 1)]}, SMALL),
    "d2231_64": ("sevnet_xs", NOZERO | {"stages": [(48, 24, 2), (96, 48, 2), (192, 96, 3), (384, 192, 1)]}, SMALL),
    "d1221_gw24_64": (
        "sevnet_xs",
        NOZERO | {"stages": [(48, 24, 1), (96, 48, 2), (192, 96, 2), (384, 192, 1)], "group_width": 24},
        SMALL,
    ),
    "d1221_zero_64": ("sevnet_xs", D1221 | {"zero_init_last": True}, SMALL),
    "d1221_lr3_64": ("sevnet_xs", D1221, SMALL | {"lr": 3e-3}),
    "d1221_jitter_64": ("sevnet_xs", D1221, SMALL | {"scale": (64, 96)}),
    "d1221_drop5_64": ("sevnet_xs", D1221, SMALL | {"dropout": 0.5}),
    "d1221_k5_64": ("sevnet_xs", D1221 | {"stem_kernel": 5}, SMALL),
    "d1221_k7_64": ("sevnet_xs", D1221 | {"stem_kernel": 7}, SMALL),
    "d1221_diff_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL),
    "d1221_diff_causal_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "causal": True}, SMALL),
    "d1221_diff_jitter_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"scale": (64, 96)}),
    "d1221_diff_drop5_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"dropout": 0.5}),
    "d1221_diff_80": (
        "sevnet_xs",
        D1221 | {"stem_temporal_init": "difference"},
        {"crop": 80, "scale": (80, 100), "eval_scale": 90},
    ),
    "d1221_diff_t12_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"frames": 12}),
    "d1221_diff_mixup_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"mixup": 0.3}),
    "d1221_diff_se_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "se_ratio": 0.0625}, SMALL),
    "d1221_diff_st5_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "stem_temporal_kernel": 5}, SMALL),
    "d1221_diff_b8_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"batch": 8, "lr": 1e-3}),
    # horizontal flip, the label swapped where the class names say a direction (sevnet.data.mirror)
    "d1221_diff_flip_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"flip": True}),
    "d1221_diff_gw24_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "group_width": 24}, SMALL),
    "d1221_diff_stem48_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "stem_channels": 48}, SMALL),
    # more frames at a lower resolution, about the same pixels per clip: smaller motion between frames
    "d1221_diff_t16_48": (
        "sevnet_xs",
        D1221 | {"stem_temporal_init": "difference"},
        {"frames": 16, "crop": 48, "scale": (48, 60), "eval_scale": 54},
    ),
    "d1221_diff_t12_56": (
        "sevnet_xs",
        D1221 | {"stem_temporal_init": "difference"},
        {"frames": 12, "crop": 56, "scale": (56, 70), "eval_scale": 63},
    ),
    "d1221_diff_wd2_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"weight_decay": 0.2}),
    # the baseline, also scored with 3 temporal views (mean of softmax) besides the 1-view top-1
    "d1221_diff_ev3_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"eval_views": 3}),
    "d1221_diff_blockdiff_64": (
        "sevnet_xs",
        D1221 | {"stem_temporal_init": "difference", "block_difference": True},
        SMALL,
    ),
    # prototype: a 3x3x3 stem conv at full resolution (make_stem_3d)
    "d1221_diff_stem3d_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "stem_3d": True}, SMALL),
    # bfloat16 autocast on the CPU (AMX): the same model, 1.26x the training clips/s at 2 threads
    "d1221_diff_bf16_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference"}, SMALL | {"amp": True}),
    # prototype: the frame difference (x_t - x_t-1, full resolution) as 3 more input channels of the stem conv
    "d1221_diff_fullres_64": (
        "sevnet_xs",
        D1221 | {"stem_temporal_init": "difference", "input_difference": True},
        SMALL,
    ),
    # a MotionCorrelation unit (model option motion_stages) after stage 1 (the config), or after stage 2 only
    "d1221_diff_motion_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "motion_stages": [1]}, SMALL),
    "d1221_diff_motion2_64": ("sevnet_xs", D1221 | {"stem_temporal_init": "difference", "motion_stages": [2]}, SMALL),
    "gw24_64": ("sevnet_xs", NOZERO | {"group_width": 24}, SMALL),
    "nozero_causal_64": ("sevnet_xs", NOZERO | {"causal": True}, SMALL),
    "stem1_64": ("sevnet_xs", {"stem_temporal_kernel": 1, "zero_init_last": True}, SMALL),
    "x3d_xs_64": ("x3d_xs", {}, SMALL),
}
RECIPE: dict[str, Any] = {
    "optim": "adamw", "lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "batch": 16, "warmup": 0.05,
    "frames": 8, "crop": 96, "scale": (96, 120), "eval_scale": 108, "dropout": 0.2, "mixup": 0.0,
    "flip": False, "amp": False, "eval_views": 1,
}  # fmt: skip


def load_split(root: Path, split: str, short_side: int) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Every clip of ``root/split/<class>/*`` decoded, short side resized to ``short_side``."""
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    clips, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / split / name).iterdir()):
            if path.suffix.lower() not in VIDEO_EXTS:
                continue
            with av.open(str(path)) as container:
                frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
            video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
            h, w = video.shape[-2:]
            size = (round(h * short_side / min(h, w)), round(w * short_side / min(h, w)))
            video = F.interpolate(video, size=size, mode="bilinear", antialias=True, align_corners=False)
            clips.append(video.round().clamp(0, 255).to(torch.uint8).numpy())
            labels.append(label)
    return clips, np.array(labels), classes


def load_dataset(root: Path, short_side: int, cache_dir: Path) -> dict[str, Any]:
    cache = cache_dir / f"{root.name}_{short_side}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=False)
    data = {split: load_split(root, split, short_side) for split in ("train", "val")}
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


MEAN, STD = 0.45 * 255, 0.225 * 255


def train_batch(clips: list[np.ndarray], labels: np.ndarray, rng: np.random.Generator, r: dict) -> tuple:
    """A batch with TSN segment sampling, short-side jitter and a random crop (one per clip)."""
    picks = rng.integers(0, len(clips), r["batch"])
    targets = labels[picks].copy()
    out = []
    for i in picks:
        video = clips[i]
        n = len(video)
        idx = np.clip(np.floor((np.arange(r["frames"]) + rng.random(r["frames"])) * n / r["frames"]), 0, n - 1)
        x = torch.from_numpy(video[idx.astype(int)]).float()
        s = int(rng.integers(r["scale"][0], r["scale"][1] + 1))
        h, w = x.shape[-2:]
        x = F.interpolate(x, size=(round(h * s / min(h, w)), round(w * s / min(h, w))), mode="bilinear",
                          antialias=True, align_corners=False)  # fmt: skip
        top = int(rng.integers(0, x.shape[-2] - r["crop"] + 1))
        left = int(rng.integers(0, x.shape[-1] - r["crop"] + 1))
        x = x[..., top : top + r["crop"], left : left + r["crop"]]
        if r["flip"] and r["mirror"][labels[i]] is not None and rng.random() < 0.5:
            x, targets[len(out)] = x.flip(-1), r["mirror"][labels[i]]
        out.append(x)
    batch = (torch.stack(out).permute(0, 2, 1, 3, 4) - MEAN) / STD  # (N, 3, T, H, W)
    return batch, torch.from_numpy(targets)


def eval_clips(clips: list[np.ndarray], r: dict, reverse: bool, view: int = 0, views: int = 1) -> torch.Tensor:
    """Centre crops of one temporal view (of ``views``: each takes frames ``(view + 0.5) / views`` into
    every segment; 1 view = the segment centres)."""
    out = []
    for video in clips:
        n = len(video)
        at = (view + 0.5) / views
        idx = np.clip(np.floor((np.arange(r["frames"]) + at) * n / r["frames"]), 0, n - 1).astype(int)
        x = torch.from_numpy(video[idx[::-1] if reverse else idx]).float()
        h, w = x.shape[-2:]
        s = r["eval_scale"]
        x = F.interpolate(x, size=(round(h * s / min(h, w)), round(w * s / min(h, w))), mode="bilinear",
                          antialias=True, align_corners=False)  # fmt: skip
        top, left = (x.shape[-2] - r["crop"]) // 2, (x.shape[-1] - r["crop"]) // 2
        out.append(x[..., top : top + r["crop"], left : left + r["crop"]])
    return (torch.stack(out).permute(0, 2, 1, 3, 4) - MEAN) / STD


class WithDifference(torch.nn.Module):
    """A SEVNet whose stem conv also sees the frame difference at full resolution (6 input channels):
    motion edges before the stride-2 stem, where a sprite's displacement is still a few pixels."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        old = model.stem.spatial.conv
        model.stem.spatial.conv = torch.nn.Conv3d(6, old.out_channels, old.kernel_size, old.stride, old.padding,
                                                  bias=False)  # fmt: skip
        torch.nn.init.kaiming_normal_(model.stem.spatial.conv.weight, mode="fan_out", nonlinearity="relu")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x - torch.cat([x[:, :, :1], x[:, :, :-1]], dim=2)  # causal: the first frame's difference is 0
        m = self.model
        return m.fc(m.dropout(m.forward_features(torch.cat([x, diff], dim=1))))


def make_stem_3d(model: torch.nn.Module) -> torch.nn.Module:
    """Prototype: the stem's spatial 1xkxk conv becomes a 3xkxk conv over frames t-1, t, t+1 (as C3D's and
    R3D's stems), started as differences of one random spatial filter for two thirds of its channels
    (the current frame only for the rest): oriented space-time filters at full resolution."""
    old = model.stem.spatial.conv
    k = old.kernel_size[-1]
    conv = torch.nn.Conv3d(3, old.out_channels, (3, k, k), old.stride, (1, k // 2, k // 2), bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1] = old.weight[:, :, 0]
        moving = torch.arange(old.out_channels) % 3 != 0
        conv.weight[moving, :, 0] = -old.weight[moving, :, 0]
    model.stem.spatial.conv = conv
    return model


def build(variant: str, num_classes: int, seed: int) -> tuple[torch.nn.Module, dict]:
    name, overrides, recipe = VARIANTS[variant]
    r = RECIPE | recipe
    torch.manual_seed(seed)
    extra = {"dropout": r["dropout"]} if name.startswith("sevnet") else {}
    overrides = dict(overrides)
    if overrides.pop("block_difference", False):  # every block's temporal conv also starts as frame differences
        model = create_model(name, num_classes=num_classes, **overrides, **extra)
        for block in model.modules():
            if isinstance(block, SEVModule):
                difference_init(block.temporal.conv, block.temporal.conv.padding[0] == 0)
        return model, r
    if overrides.pop("stem_3d", False):
        return make_stem_3d(create_model(name, num_classes=num_classes, **overrides, **extra)), r
    if overrides.pop("input_difference", False):
        return WithDifference(create_model(name, num_classes=num_classes, **overrides, **extra)), r
    return create_model(name, num_classes=num_classes, **overrides, **extra), r


def make_optimizer(model: torch.nn.Module, r: dict) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": r["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if r["optim"] == "sgd":
        groups[0]["weight_decay"] = 5e-5
        return torch.optim.SGD(groups, lr=r["lr"], momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=r["lr"])


def run(variant: str, data: dict, seed: int, steps: int) -> dict[str, Any]:
    clips, labels, classes = data["train"]
    model, r = build(variant, len(classes), seed)
    r["mirror"] = mirror_labels(classes)
    if r["flip"]:
        print(describe(classes, r["mirror"]), flush=True)
    opt = make_optimizer(model, r)
    rng = np.random.default_rng(seed)
    warm = max(1, int(r["warmup"] * steps))
    started = time.perf_counter()
    model.train()
    curve: list[float] = []  # per-step loss, reported as 50-step means: when a variant leaves chance
    for step in range(steps):
        lr_f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (steps - warm)))
        for g in opt.param_groups:
            g["lr"] = r["lr"] * lr_f
        x, y = train_batch(clips, labels, rng, r)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r["amp"]):
            loss = batch_loss(model, x, y, r, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    seconds = time.perf_counter() - started
    return {"variant": variant, "seed": seed, "steps": steps, "train_seconds": round(seconds, 1),
            "final_loss": round(loss.item(), 3), **evaluate(model, data["val"], r),
            "loss_curve": [round(float(np.mean(curve[i : i + 50])), 2) for i in range(0, len(curve), 50)]}  # fmt: skip


def batch_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, r: dict, rng: np.random.Generator):
    """Cross-entropy with label smoothing; with mixup, of a convex mix of two clips, mixed the same way."""
    ls = r["label_smoothing"]
    if r["mixup"] <= 0:
        return F.cross_entropy(model(x), y, label_smoothing=ls)
    lam, perm = float(rng.beta(r["mixup"], r["mixup"])), torch.from_numpy(rng.permutation(len(y)))
    out = model(lam * x + (1 - lam) * x[perm])
    return lam * F.cross_entropy(out, y, label_smoothing=ls) + (1 - lam) * F.cross_entropy(
        out, y[perm], label_smoothing=ls
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, val: tuple, r: dict) -> dict[str, float]:
    clips, labels, _ = val
    model.eval()
    result = {}
    for key, reverse in (("top1", False), ("reversed_top1", True)):
        preds = torch.cat(
            [model(eval_clips(clips[i : i + 32], r, reverse)).argmax(1) for i in range(0, len(clips), 32)]
        )
        result[key] = round(100 * float((preds.numpy() == labels).mean()), 1)
    if r["eval_views"] > 1:
        k = r["eval_views"]
        probs = sum(
            torch.cat(
                [model(eval_clips(clips[i : i + 32], r, False, v, k)).softmax(1) for i in range(0, len(clips), 32)]
            )
            for v in range(k)
        )
        result[f"top1_{k}_views"] = round(100 * float((probs.argmax(1).numpy() == labels).mean()), 1)
    if getattr(getattr(model, "cfg", None), "causal", False):
        result |= frames_to_correct(model, clips, labels, r)
    return result


@torch.no_grad()
def frames_to_correct(model: torch.nn.Module, clips: list[np.ndarray], labels: np.ndarray, r: dict) -> dict:
    """For a causal model, what a stream would say after frames 0..t (== the model on clip[0..t]): top-1
    after each prefix, and how many frames a stream needs before its top-1 is right and stays right."""
    x = torch.cat([eval_clips(clips[i : i + 32], r, False) for i in range(0, len(clips), 32)])
    t = x.shape[2]
    preds = np.stack([model(x[:, :, : k + 1]).argmax(1).numpy() for k in range(t)], axis=1)  # (N, T)
    return prefix_summary(preds, labels)


def prefix_summary(preds: np.ndarray, labels: np.ndarray) -> dict:
    """(N, T) top-1 after each prefix -> top-1 per prefix and frames until right for good."""
    right = preds == labels[:, None]
    stays = np.flip(np.logical_and.accumulate(np.flip(right, 1), axis=1), 1)  # right from frame k to the end
    done = stays.argmax(1)[stays.any(1)] + 1  # frames needed, over the clips right at the end
    return {"prefix_top1": [round(100 * float(c), 1) for c in right.mean(0)],
            "frames_to_correct_median": float(np.median(done)) if len(done) else None,
            "frames_to_correct_mean": round(float(done.mean()), 2) if len(done) else None}  # fmt: skip


def clips_per_second(variant: str, num_classes: int) -> float:
    """Training clips/s of the variant's model at its clip size (model step only, no data)."""
    model, r = build(variant, num_classes, 0)
    x = torch.randn(r["batch"], 3, r["frames"], r["crop"], r["crop"])
    y = torch.zeros(r["batch"], dtype=torch.long)
    return r["batch"] * train_steps_per_second(model, x, y, steps=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--variants", nargs="+", default=["before", "adamw", "stem3"], choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="budget each variant's steps are derived from")
    parser.add_argument("--reference-clips-per-s", type=float, default=0.0,
                        help="the first variant's clips/s on a quiet machine (0 = use this run's)")  # fmt: skip
    parser.add_argument("--reference", choices=sorted(VARIANTS),
                        help="the variant --reference-clips-per-s is for (measured, not trained)")  # fmt: skip
    parser.add_argument("--equal-steps", action="store_true", help="every variant trains the first one's steps")
    parser.add_argument("--out", type=Path, default=Path("reports/recipe"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    reference = args.reference or args.variants[0]
    speeds = {v: clips_per_second(v, 12) for v in dict.fromkeys([reference, *args.variants])}
    if args.reference_clips_per_s > 0:  # keep the measured ratios, take the absolute speed from a quiet run
        scale = args.reference_clips_per_s / speeds[reference]
        speeds = {k: v * scale for k, v in speeds.items()}
    if args.equal_steps:  # every variant gets the first one's steps (speed ratios measured elsewhere)
        speeds = {k: speeds[reference] for k in speeds}
    print("training clips/s (this run, interleaved measure):", {k: round(v, 1) for k, v in speeds.items()})
    rows = []
    for root in args.roots:
        data = load_dataset(root, 128, args.out / "cache")
        for variant in args.variants:
            steps = int(args.minutes * 60 * speeds[variant] / (RECIPE | VARIANTS[variant][2])["batch"])
            for seed in args.seeds:
                row = {
                    "dataset": root.name,
                    "clips_per_s": round(speeds[variant], 1),
                    **run(variant, data, seed, steps),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    datasets = sorted({r["dataset"] for r in rows})
    print("\n| variant | clips/s | " + " | ".join(f"{d} top-1 (reversed)" for d in datasets) + " |")
    print("|---|---|" + "---|" * len(datasets))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for d in datasets:
            sel = [r for r in rows if r["variant"] == variant and r["dataset"] == d]
            if not sel:
                cells.append("")
                continue
            top = [r["top1"] for r in sel]
            rev = np.mean([r["reversed_top1"] for r in sel])
            spread = f" ±{np.std(top):.1f}" if len(top) > 1 else ""
            cells.append(f"{np.mean(top):.1f}%{spread} ({rev:.1f}%) n={len(top)}")
        speed = next(r["clips_per_s"] for r in rows if r["variant"] == variant)
        print(f"| {variant} | {speed} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

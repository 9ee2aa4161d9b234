"""The benchmark suite on the built-in temporal-reasoning benchmark (sevnet.data.synthetic).

Every model is trained from scratch with the same recipe, clip size (8x64x64), data and
wall-clock budget, then evaluated on the same held-out clips; one table with top-1, GMACs,
parameters, training and inference clips/s, plus plots (accuracy vs GMACs, accuracy vs
parameters, CPU clips/s vs GMACs). The budget is per model; each model's cosine schedule is
fitted to the number of steps its measured speed allows in that budget.

    python benchmarks/suite.py --minutes 2.5                 # peers + ablations, equal wall-clock
    python benchmarks/suite.py --steps 600 --only peers      # equal number of steps (epochs) instead
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sevnet.engine import load_config, train
from sevnet.models import count_gmacs, count_params, create_model, list_models
from sevnet.timing import train_steps_per_second

BASE = {
    "model.dropout": 0.2,
    "data.format": "synthetic",
    "data.num_frames": 8,
    "data.num_workers": 0,
    "data.synthetic": "{num_train: 2400, num_val: 480, size: 64, seed: 0}",
    "train.batch_size": 16,
    "train.epochs": 1000,  # the step budget below ends training
    "train.progress": "false",
    "optim.lr": 0.05,
    "optim.base_batch": 16,
    "optim.warmup_epochs": 0.3,
    "eval.batch_size": 32,
    "eval.every_epochs": 0,
}
PEERS = [
    ("SEVNet-XS", "sevnet_xs", {}),
    ("SEVNet-S", "sevnet_s", {}),
    ("X3D-XS", "x3d_xs", {}),
    ("X3D-S", "x3d_s", {}),
    ("R(2+1)D-18", "r2plus1d_18", {}),
    ("R3D-18", "r3d_18", {}),
]
ABLATIONS = [
    ("SEV, group width 8 (default)", "sevnet_xs", {}),
    ("SEV, depthwise (group width 1)", "sevnet_xs", {"group_width": 1}),
    ("SEV, group width 4", "sevnet_xs", {"group_width": 4}),
    ("SEV, dense spatial conv", "sevnet_xs", {"group_width": "dense"}),
    ("R(2+1)D-like block", "sevnet_xs", {"block": "r2plus1d"}),
    ("R3D-like block", "sevnet_xs", {"block": "r3d"}),
    ("SEV + SE (ratio 0.25)", "sevnet_xs", {"se_ratio": 0.25}),
    ("SEV, grouped temporal conv", "sevnet_xs", {"temporal_conv": "grouped"}),
    ("SEV, 3x3x3 spatial-grouped conv", "sevnet_xs", {"spatial_kernel_t": 3}),
    ("SEV, no temporal conv (kernel 1)", "sevnet_xs", {"temporal_kernel": 1}),
]


def steps_per_second(name: str, overrides: dict, batch: int = 16, shape=(3, 8, 64, 64), steps: int = 4) -> float:
    """Training steps/s measured on random clips (forward + backward + SGD step)."""
    model = create_model(name, num_classes=12, **overrides)
    return train_steps_per_second(model, torch.randn(batch, *shape), torch.randint(0, 12, (batch,)), steps)


def run_one(label: str, name: str, overrides: dict, minutes: float, out: Path, steps: int = 0) -> dict:
    """Train one model for ``steps`` steps, or as many as fit in ``minutes`` at its measured speed."""
    max_steps = steps or max(10, int(minutes * 60 * steps_per_second(name, overrides)))
    settings = {
        **BASE,
        "model.name": name,
        "train.max_steps": max_steps,
        "train.out_dir": str(out / label.replace(" ", "_")),
    }
    overrides_yaml = "{" + ", ".join(f"{k}: {v}" for k, v in overrides.items()) + "}"
    cfg = load_config(None, [f"{k}={v}" for k, v in settings.items()] + [f"model.overrides={overrides_yaml}"])
    result = train(cfg, overwrite=True)  # a rerun replaces the previous one
    model = result.model.eval()
    x = torch.randn(32, 3, 8, 64, 64)
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        model(x)
        infer = 32 / (time.perf_counter() - t0)
    row = {
        "model": label,
        "name": name,
        "overrides": overrides,
        "top1": result.metrics["top1"],
        "gmacs": count_gmacs(model, (1, 3, 8, 64, 64)),
        "params_m": count_params(model) / 1e6,
        "train_clips_per_s": result.train_clips_per_s,
        "infer_clips_per_s": infer,
        "steps": result.steps,
        "train_minutes": result.train_time_s / 60,
    }
    print(f"{label:<36} top-1 {row['top1']:.1%}  {row['gmacs']:.3f} GMACs  {row['params_m']:.2f} M  "
          f"train {row['train_clips_per_s']:.1f} clips/s  infer {row['infer_clips_per_s']:.1f} clips/s  "
          f"{row['steps']} steps", flush=True)  # fmt: skip
    return row


def table(rows: list[dict], title: str, budget: str) -> str:
    lines = [
        f"### {title} (8x64x64 clips, {budget} per model, {torch.get_num_threads()} CPU threads)",
        "",
        "| model | top-1 | GMACs | params (M) | train clips/s | inference clips/s | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['top1']:.1%} | {r['gmacs']:.3f} | {r['params_m']:.2f} | "
            f"{r['train_clips_per_s']:.1f} | {r['infer_clips_per_s']:.1f} | {r['steps']} |"
        )
    return "\n".join(lines)


def plots(rows: list[dict], out: Path, budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, (xkey, ykey, xlabel, ylabel) in zip(
        axes,
        [
            ("gmacs", "top1", "GMACs per clip (multiply-adds)", "top-1"),
            ("params_m", "top1", "parameters (M)", "top-1"),
            ("gmacs", "infer_clips_per_s", "GMACs per clip (multiply-adds)", "CPU inference clips/s"),
        ],
    ):
        for r in rows:
            colour = "tab:red" if r["name"].startswith("sevnet") else "tab:blue"
            ax.scatter(r[xkey], r[ykey], color=colour)
            ax.annotate(r["model"], (r[xkey], r[ykey]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.suptitle(f"Built-in temporal benchmark, {budget} per model (red: SEVNet)")
    fig.tight_layout()
    fig.savefig(out / "suite_plots.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.5, help="wall-clock training budget per model")
    parser.add_argument("--steps", type=int, default=0, help="train every model this many steps instead (batch 16)")
    parser.add_argument("--models", nargs="+", default=None, help="only these registry names, e.g. sevnet_xs x3d_xs")
    parser.add_argument("--only", choices=["peers", "ablations"], default=None)
    parser.add_argument("--out", default="reports/suite")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    available = set(list_models())
    results: dict[str, list[dict]] = {}
    for group, entries in (("peers", PEERS), ("ablations", ABLATIONS)):
        if args.only and group != args.only:
            continue
        wanted = [(lbl, n, ov) for lbl, n, ov in entries if n in available and (not args.models or n in args.models)]
        results[group] = [run_one(lbl, n, ov, args.minutes, out, args.steps) for lbl, n, ov in wanted]
        (out / "suite.json").write_text(json.dumps(results, indent=2))
    budget = f"{args.steps} training steps" if args.steps else f"{args.minutes:g} min of training"
    text = []
    if "peers" in results:
        text.append(table(results["peers"], "SEVNet vs peers, trained from scratch", budget))
    if "ablations" in results:
        text.append(table(results["ablations"], "The paper's ablations on SEVNet-XS", budget))
    (out / "suite.md").write_text("\n\n".join(text) + "\n")
    plots([r for rows in results.values() for r in rows], out, budget)
    print("\n\n".join(text))
    print(f"\nwritten: {out}/suite.md, suite.json, suite_plots.png")


if __name__ == "__main__":
    main()

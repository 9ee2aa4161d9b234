"""What streaming costs in accuracy: SEVNet-XS trained twice on the built-in benchmark (the demo's
data and recipe, same seed), once as a clip model and once causal (``causal=True``, the model that
``sevnet stream`` runs), then evaluated on the held-out clips.

For the causal model it also reports what a stream would say after each frame: top-1 after frames
0..t (a causal model on clip[0..t] gives exactly the stream's cumulative-mode logits after frame t;
tests/test_streaming.py checks that) and how many frames a stream needs before its top-1 is right
and stays right to the end of the action.

    python benchmarks/causal_accuracy.py                  # about 2 x the demo's training time
    python benchmarks/causal_accuracy.py --epochs 4 --seeds 0 1

The small real-image datasets are covered by benchmarks/recipe.py (variant ``nozero_causal_64``).
Writes reports/causal_accuracy/results.json.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from recipe import prefix_summary  # benchmarks/recipe.py, beside this script

from sevnet.data.synthetic import build_synthetic_dataset
from sevnet.demo import demo_config
from sevnet.engine import train


@torch.no_grad()
def prefix_top1(model: torch.nn.Module, dataset: torch.utils.data.Dataset) -> dict:
    """Top-1 after each prefix of the clip, and frames until the top-1 is right for good."""
    model.eval()
    items = [dataset[i] for i in range(len(dataset))]
    clips = torch.stack([item["clip"][0] for item in items])  # evaluation items are (views, 3, T, H, W)
    labels = np.array([int(item["target"]) for item in items])
    t = clips.shape[2]
    preds = np.stack(
        [torch.cat([model(clips[i : i + 64, :, : k + 1]) for i in range(0, len(clips), 64)]).argmax(1).numpy()
         for k in range(t)], axis=1)  # fmt: skip
    summary = prefix_summary(preds, labels)
    return {
        "top1": summary["prefix_top1"][-1],
        **summary,
        "frames": t,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--out", type=Path, default=Path("reports/causal_accuracy"))
    args = parser.parse_args()
    synthetic = {"num_train": 2400, "num_val": 480, "size": 64}
    rows = []
    for seed in args.seeds:
        for causal in (False, True):
            cfg = demo_config(args.out / f"run_{seed}_{int(causal)}", synthetic | {"seed": seed}, seed=seed,
                              epochs=args.epochs)  # fmt: skip
            cfg = replace(cfg, model=replace(cfg.model, overrides={"causal": causal}))
            cfg = replace(cfg, train=replace(cfg.train, progress=False))
            result = train(cfg, overwrite=True)
            val = build_synthetic_dataset(cfg.data, "val", train=False)
            row = {"seed": seed, "causal": causal, "steps": result.steps, **prefix_top1(result.model, val)}
            if not causal:  # a clip model's prefixes are not what it was trained on: report top-1 only
                row = {k: row[k] for k in ("seed", "causal", "steps", "top1", "frames")}
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    clip = np.mean([r["top1"] for r in rows if not r["causal"]])
    causal = np.mean([r["top1"] for r in rows if r["causal"]])
    print(f"\nclip model top-1 {clip:.1f}%, causal {causal:.1f}% ({causal - clip:+.1f} points), "
          f"seeds {args.seeds}")  # fmt: skip


if __name__ == "__main__":
    main()

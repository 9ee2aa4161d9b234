"""Does a trained model read temporal order? Top-1 of a checkpoint on its validation split with the
frames as they are and played backwards, and each class's top-1 (where the errors are).

On a dataset whose classes come in time-reversed pairs (``tools/photo_motion.py``, the demo's),
a model that reads temporal order scores near 0% on reversed clips (it predicts the partner), one
that ignores it scores about its forward top-1 / 2 or more. Scored in float32 on the CPU: the forward
top-1 can differ from the training run's final evaluation (bf16 autocast) by a few clips.

    python benchmarks/reversed_eval.py folder_sevnet_xs data.root=DIR \\
        --checkpoint runs/folder_sevnet_xs/checkpoints/model.safetensors
"""

from __future__ import annotations

import argparse

from sevnet.data import build_dataset, build_loader
from sevnet.engine import load_config
from sevnet.engine.checkpoint import load_model
from sevnet.engine.distributed import init_distributed
from sevnet.engine.evaluate import predict_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    dataset = build_dataset(cfg.data, cfg.eval.split, train=False)
    model, _ = load_model(args.checkpoint, expect_num_classes=dataset.num_classes)
    loader = build_loader(dataset, cfg.eval.batch_size, train=False, cfg_data=cfg.data)
    info = init_distributed()
    for order, fn in (("forward", model), ("reversed", lambda clip: model(clip.flip(2)))):  # (N, C, T, H, W)
        _, probs, targets, _ = predict_loader(fn, loader, False, info)
        right = probs.argmax(1) == targets
        print(f"{order:9s} top-1 {right.float().mean():.1%} ({len(targets)} clips, float32)")
        if order == "forward":
            for label, name in enumerate(dataset.classes):
                mine = targets == label
                print(f"    {name:30s} {right[mine].float().mean():.1%}")


if __name__ == "__main__":
    main()

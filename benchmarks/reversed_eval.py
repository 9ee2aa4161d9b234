"""Does a trained model read temporal order? Top-1 of a checkpoint on its validation split with the
frames as they are and played backwards, and each class's top-1 (where the errors are).

On a dataset whose classes come in time-reversed pairs (``tools/photo_motion.py``, the demo's),
a model that reads temporal order scores near 0% on reversed clips (it predicts the partner), one
that ignores it scores about its forward top-1 / 2 or more. Scored in float32 on the CPU: the forward
top-1 can differ from the training run's final evaluation (bf16 autocast) by a few clips. A model whose
checkpoint records ``both_ways`` (trained with data.reverse: auto) is scored both ways, as ``sevnet eval``
scores it; ``--one-way`` scores the clips as given only.

    python benchmarks/reversed_eval.py folder_sevnet_xs data.root=DIR \\
        --checkpoint runs/folder_sevnet_xs/checkpoints/model.safetensors
"""

from __future__ import annotations

import argparse

from sevnet.data import build_dataset, build_loader
from sevnet.engine import load_config
from sevnet.engine.card import ModelCard
from sevnet.engine.checkpoint import load_model
from sevnet.engine.distributed import init_distributed
from sevnet.engine.evaluate import predict_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--one-way", action="store_true", help="do not score both ways, even where recorded")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    dataset = build_dataset(cfg.data, cfg.eval.split, train=False)
    model, meta = load_model(args.checkpoint, expect_num_classes=dataset.num_classes)
    both_ways = None if args.one_way else ModelCard.from_meta(meta).both_ways
    loader = build_loader(dataset, cfg.eval.batch_size, train=False, cfg_data=cfg.data)
    info = init_distributed()
    for order, fn in (("forward", model), ("reversed", lambda clip: model(clip.flip(2)))):  # (N, C, T, H, W)
        _, probs, targets, _ = predict_loader(fn, loader, False, info, both_ways=both_ways)
        right = probs.argmax(1) == targets
        how = ", scored both ways" if both_ways else ""
        print(f"{order:9s} top-1 {right.float().mean():.1%} ({len(targets)} clips, float32{how})")
        if order == "forward":
            for label, name in enumerate(dataset.classes):
                mine = targets == label
                print(f"    {name:30s} {right[mine].float().mean():.1%}")


if __name__ == "__main__":
    main()

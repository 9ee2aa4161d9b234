"""Write sevnet's built-in temporal-reasoning benchmark (``sevnet.data.synthetic``) as real VP9 .webm
files in the Something-Something V2 layout, so that the reader of the real dataset
(``data.format=ssv2``) reads it: a dataset generator, not part of the ``sevnet`` package.

``python tools/ssv2_layout.py OUT --train 240 --val 120`` from a checkout (sevnet importable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sevnet.data.synthetic import CLASSES, SyntheticSpec, render_clip


def write_ssv2_layout(root: str | Path, num_train: int, num_val: int, seed: int = 0,
                      spec: SyntheticSpec | None = None, fps: int = 12) -> Path:  # fmt: skip
    """Write the benchmark as Something-Something V2 is released: labels JSON, train/validation
    JSON lists with templates, and ``20bn-something-something-v2/<id>.webm`` (VP9) videos
    (``spec``: the clips' frames and size, default ``SyntheticSpec()``)."""
    import av

    spec = spec or SyntheticSpec()
    root = Path(root)
    video_dir = root / "20bn-something-something-v2"
    video_dir.mkdir(parents=True, exist_ok=True)
    labels = {name: str(i) for i, name in enumerate(CLASSES)}
    (root / "something-something-v2-labels.json").write_text(json.dumps(labels, indent=1))
    next_id = 1
    for split, count, split_seed in (("train", num_train, seed * 2), ("validation", num_val, seed * 2 + 1)):
        entries = []
        for i in range(count):
            label = i % len(CLASSES)
            clip = render_clip(label, i, split_seed, spec)
            vid = str(next_id)
            next_id += 1
            with av.open(str(video_dir / f"{vid}.webm"), "w") as out:
                stream = out.add_stream("libvpx-vp9", rate=fps)
                stream.width = stream.height = spec.size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
                for frame in clip:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
            template = CLASSES[label].replace("something", "[something]").replace("Something", "[Something]")
            entries.append({"id": vid, "label": CLASSES[label].lower(), "template": template, "placeholders": []})
        (root / f"something-something-v2-{split}.json").write_text(json.dumps(entries))
    return root


def main(argv: list[str] | None = None) -> None:
    """``python tools/ssv2_layout.py OUT [--train N] [--val N] [--frames T] [--size S] [--seed K]``."""
    parser = argparse.ArgumentParser(prog="python tools/ssv2_layout.py", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=240, help="training videos (default 240)")
    parser.add_argument("--val", type=int, default=120, help="validation videos (default 120)")
    parser.add_argument("--frames", type=int, default=SyntheticSpec.num_frames, help="frames per video")
    parser.add_argument("--size", type=int, default=SyntheticSpec.size, help="frame side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=int, default=12)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(num_frames=args.frames, size=args.size)
    root = write_ssv2_layout(args.out, args.train, args.val, args.seed, spec, args.fps)
    print(f"wrote {root} ({args.train} train and {args.val} validation videos, {len(CLASSES)} classes)")


if __name__ == "__main__":
    main()

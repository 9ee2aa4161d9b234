"""Decoder fuzz test (issue 13): mutated real video files (truncations, byte flips, header damage,
zeroed chunks) of three codecs go through the training loader and through ``predict``'s batch path.
The main process must never crash, and every case is either decoded or reported by its file name.

Seeded: ``SEVNET_FUZZ_SEED`` (default 13) and ``SEVNET_FUZZ_CASES`` (default 330) reproduce a run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from _videos import write_video

from sevnet.data import DataConfig, build_dataset, build_loader
from sevnet.deploy.batch import predict_files
from sevnet.deploy.predictor import Predictor

SEED = int(os.environ.get("SEVNET_FUZZ_SEED", "13"))
CASES = int(os.environ.get("SEVNET_FUZZ_CASES", "330"))
KINDS = ("truncate", "flip", "header", "zero_chunk")
SMALL = {"num_frames": 4, "train_scale": [32, 32], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One seeded mutation of an encoded file."""
    buf = bytearray(data)
    n = len(buf)
    if kind == "truncate":
        return bytes(buf[: int(rng.integers(0, n))])
    if kind == "flip":  # a few random bytes anywhere
        for pos in rng.integers(0, n, size=int(rng.integers(1, 24))):
            buf[pos] ^= int(rng.integers(1, 256))
    elif kind == "header":  # the container header: magic numbers, sizes, codec parameters
        span = min(n, int(rng.integers(16, 512)))
        for pos in rng.integers(0, span, size=int(rng.integers(1, 16))):
            buf[pos] = int(rng.integers(0, 256))
    else:  # a zeroed run of bytes in the middle
        start, length = int(rng.integers(0, n)), int(rng.integers(16, 2048))
        buf[start : start + length] = bytes(len(buf[start : start + length]))
    return bytes(buf)


@pytest.fixture(scope="module")
def fuzz_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("fuzz")
    bases = [write_video(root / f"base{s}", num_frames=16, size=(32, 32), fps=8) for s in (".mp4", ".webm", ".avi")]
    originals = [p.read_bytes() for p in bases]
    rng = np.random.default_rng(SEED)
    names = []
    for i in range(CASES):
        b, kind = i % len(bases), KINDS[(i // len(bases)) % len(KINDS)]
        name = f"case{i:04d}_{kind}{bases[b].suffix}"
        (root / name).write_bytes(mutate(originals[b], kind, rng))
        names.append(name)
    (root / "train_list.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
    return root, names


def test_mutated_videos_are_decoded_or_named_by_the_training_loader_and_predict(fuzz_cases) -> None:
    root, names = fuzz_cases
    assert len(names) >= 300
    started, cpu = time.perf_counter(), time.process_time()
    cfg = DataConfig(format="video_list", root=str(root), num_classes=2, num_workers=2, **SMALL)
    loader = build_loader(build_dataset(cfg, "train", train=True), 16, train=False, cfg_data=cfg)
    decoded, skipped = set(), {}
    for batch in loader:  # worker processes: a decoder that crashes kills a worker, not this process
        decoded |= {names[i] for i in batch["index"].tolist()}
        skipped |= {Path(path).name: reason for path, reason in batch["skipped"]}
    assert decoded | set(skipped) == set(names) and not decoded & set(skipped)
    assert all(reason for reason in skipped.values())

    data = {**{k: SMALL[k] for k in ("num_frames", "eval_scale", "eval_crop")}, "sampling": "segment",
            "frame_stride": 1, "mean": [0.45] * 3, "std": [0.225] * 3}  # fmt: skip
    predictor = Predictor(lambda x: np.zeros((len(x), 2), np.float32), {"data": data, "class_names": ["a", "b"]})
    results = list(predict_files(predictor, [root / n for n in names], topk=1, batch_size=16, workers=2))
    assert [Path(r["video"]).name for r in results] == names
    failed = {Path(r["video"]).name for r in results if "error" in r}
    assert all(("top" in r) != ("error" in r) and (r.get("error") or r.get("top")) for r in results)
    # Training samples random frames, predict the centre ones: the failures overlap but need not be equal.
    assert len(failed & set(skipped)) >= 0.8 * max(len(failed), len(skipped))
    wall = time.perf_counter() - started
    print(f"\nfuzz: {len(names)} cases (seed {SEED}): training {len(decoded)} decoded, {len(skipped)} named; "
          f"predict {len(names) - len(failed)} decoded, {len(failed)} named; "
          f"{wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU in the main process")  # fmt: skip

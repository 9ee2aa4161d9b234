"""How fast are timelines and batch prediction, next to what bounds them? In one run:

1. Timeline: a 640x360 30 fps H.264 file (``--minutes`` long) at ``--window 2 --stride 1``, against
   decoding the same file alone (every frame decoded, nothing else; and decoded + converted to RGB).
   Each measurement runs in its own process (so its peak memory is its own), interleaved, best of
   ``--repeats``. Target: timeline speed >= 0.8x decode-only, peak memory < 1 GB.
2. Batch: ``--videos`` short videos (2 s, 320x240, 30 fps, H.264) in class folders through
   ``predict_files`` with DataLoader workers, against the loader alone (same workers, nothing run)
   and the model alone (batches of preprocessed clips). Target: >= 0.8x min(loader, model).

The model is SEVNet-XS at its 8x112x112 reference input (random weights: this measures speed) on
OpenVINO int8 and float32; the timeline is also run with a model that returns zeros, which
measures the pipeline alone (decoding, converting the sampled frames, the ring buffer).

    python benchmarks/predict_bench.py [--minutes 10] [--videos 200] [--workers 2] [--batch-model int8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests"))


def write_long_video(path: Path, minutes: float, width: int = 640, height: int = 360, fps: int = 30) -> Path:
    """A moving textured scene with a bouncing box: real motion for the encoder, cheap to draw."""
    import av

    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    texture = (rng.random((height // 8, (width + 4 * fps * 60) // 8, 3)) * 255).astype(np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": "60"}
        for i in range(round(minutes * 60 * fps)):
            x = (4 * i) % (texture.shape[1] - width)
            img = np.ascontiguousarray(texture[:, x : x + width])
            bx = int((width - 80) * (0.5 + 0.5 * np.sin(i / 20)))
            img[140:220, bx : bx + 80] = (255, 255 - (i % 256), i % 256)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.rename(path)
    return path


def make_models(folder: Path) -> dict[str, Path]:
    """SEVNet-XS, 174 classes, 8x112x112 segment clips: the checkpoint, OpenVINO float32 and int8
    (int8 calibrated on random clips, as in deploy_bench: this measures speed, not accuracy)."""
    import torch

    from sevnet import create_model
    from sevnet.deploy.export import export_checkpoint
    from sevnet.deploy.quantize import quantize_openvino
    from sevnet.deploy.runtime import read_sidecar, write_sidecar
    from sevnet.engine.checkpoint import save_checkpoint

    ckpt, xml, int8 = folder / "sevnet_xs.safetensors", folder / "sevnet_xs.xml", folder / "sevnet_xs-int8.xml"
    if not ckpt.is_file():
        torch.manual_seed(0)
        data = {"num_frames": 8, "sampling": "segment", "frame_stride": 4, "eval_scale": 128, "eval_crop": 112,
                "mean": [0.45] * 3, "std": [0.225] * 3, "frame_template": "{:05d}.jpg"}  # fmt: skip
        meta = {"model": "sevnet_xs", "model_overrides": {}, "num_classes": 174, "multi_label": False,
                "class_names": [f"class {i}" for i in range(174)], "data": data}  # fmt: skip
        save_checkpoint(ckpt, create_model("sevnet_xs", num_classes=174), meta)
    if not xml.is_file():
        export_checkpoint(ckpt, "openvino", folder / "sevnet_xs")
    if not int8.is_file():
        calib = [np.random.default_rng(i).standard_normal((1, 3, 8, 112, 112)).astype(np.float32) for i in range(8)]
        quantize_openvino(xml, calib, int8)
        write_sidecar(int8, read_sidecar(xml))
    return {"torch": ckpt, "fp32": xml, "int8": int8}


def phase_decode(video: Path, rgb: bool) -> dict:
    """Decoding alone: every frame through the decoder (and, with ``rgb``, into an RGB array)."""
    import av

    frames = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as the timeline decodes
        for frame in container.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            frames += 1
    return {"frames": frames}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def phase_main(args: argparse.Namespace) -> None:
    """Child process: one measurement, printed as a JSON line (seconds of the work, peak memory)."""
    video = Path(args.video)
    start, cpu = time.perf_counter(), os.times()
    if args.phase in ("decode", "decode_rgb"):
        result = phase_decode(video, rgb=args.phase == "decode_rgb")
    else:
        import sevnet

        predictor = sevnet.load(args.model)
        if args.phase == "timeline_no_model":  # the pipeline alone: decoding, sampled frames, ring, smoothing
            predictor.runner = lambda clips: np.zeros((len(clips), len(predictor.classes)), np.float32)
        predictor.scores(np.zeros((8, 360, 640, 3), np.uint8))  # warm-up: first call of the runtime
        loaded_mb = peak_rss_mb()  # libraries and the model: torch alone is about 0.5 GB
        start, cpu = time.perf_counter(), os.times()
        tl = predictor.timeline(video, window=2.0, stride=1.0)
        result = {"windows": len(tl.starts), "ring_frames": tl.ring_frames, "loaded_mb": loaded_mb}
    result["seconds"] = time.perf_counter() - start
    now = os.times()
    result["cpu_seconds"] = now.user - cpu.user + now.system - cpu.system  # every thread of this process
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def run_phase(phase: str, video: Path, model: Path) -> dict:
    cmd = [sys.executable, str(HERE), "--phase", phase, "--video", str(video), "--model", str(model)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


TIMELINE_PHASES = {  # name: (phase, model key)
    "decode only": ("decode", "fp32"),
    "decode + RGB (every frame)": ("decode_rgb", "fp32"),
    "timeline, no model (pipeline alone)": ("timeline_no_model", "fp32"),
    "timeline, OpenVINO int8": ("timeline", "int8"),
    "timeline, OpenVINO fp32": ("timeline", "fp32"),
}


def bench_timeline(video: Path, models: dict[str, Path], repeats: int) -> dict[str, dict]:
    """Best of ``repeats`` for each phase, the phases interleaved (the machine's load drifts)."""
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for name, (phase, key) in TIMELINE_PHASES.items():
            r = run_phase(phase, video, models[key])
            if name not in best:
                best[name] = r
            best[name]["seconds"] = min(best[name]["seconds"], r["seconds"])
            best[name]["cpu_seconds"] = min(best[name]["cpu_seconds"], r["cpu_seconds"])
            best[name]["peak_rss_mb"] = max(best[name]["peak_rss_mb"], r["peak_rss_mb"])
            print(f"  {name:<36} {r['seconds']:7.2f} s  cpu {r['cpu_seconds']:7.2f} s  peak {r['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)  # fmt: skip
    return best


def write_short_videos(root: Path, count: int) -> list[Path]:
    from _videos import write_video

    paths = [root / f"class{i % 4}" / f"{i:04d}.mp4" for i in range(count)]
    for path in paths:
        if not path.is_file():
            write_video(path, num_frames=60, fps=30, size=(240, 320))
    return paths


def bench_batch(model: Path, paths: list[Path], workers: int, batch: int, repeats: int) -> dict:
    """clips/s of the loader alone, the model alone and predict_files, best of ``repeats`` each."""
    import sevnet
    from sevnet.deploy.batch import make_loader, predict_files

    predictor = sevnet.load(model)
    clip = predictor.preprocess(paths[0])
    clips = np.concatenate([clip] * batch)
    predictor.probabilities(clips)  # warm-up
    best = {"loader": 0.0, "model": 0.0, "predict": 0.0}
    for _ in range(repeats):
        t = time.perf_counter()
        n = sum(len(items) for items in make_loader(predictor, paths, 1, batch, workers))
        best["loader"] = max(best["loader"], n / (time.perf_counter() - t))
        t = time.perf_counter()
        steps = max(1, len(paths) // batch)
        for _ in range(steps):
            predictor.probabilities(clips)
        best["model"] = max(best["model"], steps * batch / (time.perf_counter() - t))
        t = time.perf_counter()
        n = sum("top" in r for r in predict_files(predictor, paths, 1, 1, batch, workers))
        best["predict"] = max(best["predict"], n / (time.perf_counter() - t))
        print(f"  loader {best['loader']:.1f}  model {best['model']:.1f}  predict {best['predict']:.1f} clips/s",
              file=sys.stderr)  # fmt: skip
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the long video")
    p.add_argument("--videos", type=int, default=200, help="short videos in the batch folder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-model", choices=["int8", "fp32", "torch"], default="int8", help="model of the batch part")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "sevnet" / "predict_bench"))
    p.add_argument("--skip", choices=["timeline", "batch"], help="leave one part out")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--video", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        return phase_main(args)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    models = make_models(cache)
    if args.skip != "timeline":
        video = write_long_video(cache / f"long_{args.minutes:g}min_640x360.mp4", args.minutes)
        best = bench_timeline(video, models, args.repeats)
        short = write_long_video(cache / "long_0.5min_640x360.mp4", 0.5)
        best["30 s file"] = run_phase("timeline", short, models["int8"])  # memory does not grow with length
        print_timeline(best, args)
    if args.skip != "batch":
        paths = write_short_videos(cache / "short", args.videos)
        print_batch(bench_batch(models[args.batch_model], paths, args.workers, args.batch_size, args.repeats), args)


def print_timeline(best: dict[str, dict], args: argparse.Namespace) -> None:
    decode = best["decode only"]
    windows = best["timeline, OpenVINO int8"]["windows"]
    print(f"\nTimeline: {args.minutes:g} min 640x360 30 fps H.264, --window 2 --stride 1 ({windows} windows), "
          f"SEVNet-XS 8x112x112, best of {args.repeats} (wall and CPU time each the best of its runs)")  # fmt: skip
    print("| run | wall s | CPU s | speed vs decode-only: wall | CPU | peak memory (before the run) |")
    print("|---|---|---|---|---|---|")
    for name, r in best.items():
        if name == "30 s file":
            continue
        before = f" ({r['loaded_mb']:.0f} MB)" if "loaded_mb" in r else ""
        print(f"| {name} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {decode['seconds'] / r['seconds']:.2f}x | "
              f"{decode['cpu_seconds'] / r['cpu_seconds']:.2f}x | {r['peak_rss_mb']:.0f} MB{before} |")  # fmt: skip
    long, short = best["timeline, OpenVINO int8"], best["30 s file"]
    print(f"ring buffer: {long['ring_frames']} frames of 3x112x112; timeline int8 on a 30 s file: peak "
          f"{short['peak_rss_mb']:.0f} MB ({short['loaded_mb']:.0f} MB before), on the {args.minutes:g} min file: "
          f"{long['peak_rss_mb']:.0f} MB ({long['loaded_mb']:.0f} MB before)")  # fmt: skip


def print_batch(best: dict, args: argparse.Namespace) -> None:
    bound = min(best["loader"], best["model"])
    shared = 1 / (1 / best["loader"] + 1 / best["model"])  # both on the same cores, one after the other
    print(f"\nBatch: {args.videos} videos (2 s, 320x240, 30 fps, H.264), {args.workers} loader workers, "
          f"batch {args.batch_size}, SEVNet-XS 8x112x112 ({args.batch_model}), best of {args.repeats}")  # fmt: skip
    print("| loader alone | model alone | predict (end to end) | vs min(loader, model) | vs 1/(1/loader + 1/model) |")
    print("|---|---|---|---|---|")
    print(f"| {best['loader']:.1f} clips/s | {best['model']:.1f} clips/s | {best['predict']:.1f} clips/s | "
          f"{best['predict'] / bound:.2f}x | {best['predict'] / shared:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()

"""Training and inference clips/s of every SEVNet size beside its X3D rival, in one run.

Model-only rows: synthetic clips already on the device; a training step is forward + cross-entropy +
backward + AdamW, inference is a forward under no_grad. Each row is one setting (bf16 autocast or
float32; channels_last_3d or NCDHW; eager or torch.compile) with SEVNet and X3D measured back to back
and their ratio, plus the peak memory each training step allocated (torch.cuda.max_memory_allocated).
cudnn.benchmark is on; each measurement has warm-up steps, synchronises the device around each round
and reports the median of the rounds. An agreement check runs one forward per model in bf16 and in
float32 (TF32 off) and reports the logits' max relative error and the top-1 agreement: cuDNN has
shipped bf16 conv3d regressions (pytorch#163539, #166122), and a broken kernel shows up there first.

The end-to-end row trains SEVNet-S with the real Trainer (sevnet train's engine) on a generated
SSv2-layout dataset (240x320 webm/VP9, decoded by the real loader and its workers) and sets its
clips/s beside the same Trainer's step on one batch repeated (no loader): the share of the model-only
rate that the input pipeline sustains.

    python benchmarks/gpu_bench.py                      # full: every size/setting, compile rows too
    python benchmarks/gpu_bench.py --quick              # a minute on a CPU; the GPU check's mode
    python benchmarks/gpu_bench.py --device cpu --sizes xs --compile off

Prints a markdown table; writes JSON to --out (reports/gpu_bench.json).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _videos import write_video

from sevnet.engine import load_config
from sevnet.engine.config import TrainConfig
from sevnet.engine.trainer import Trainer, cpu_has_amx
from sevnet.models import create_model, list_models, model_info

PAIRS = {"xs": ("sevnet_xs", "x3d_xs"), "s": ("sevnet_s", "x3d_s"), "m": ("sevnet_m", "x3d_m")}
NUM_CLASSES = 174  # SSv2's: the same classifier for both families
CL = torch.channels_last_3d


@dataclasses.dataclass(frozen=True)
class Setting:
    precision: str  # "bf16" (autocast) | "fp32"
    layout: str  # "channels_last" | "ncdhw"
    compiled: bool

    def label(self) -> str:
        return f"{self.precision}, {'channels-last' if self.layout == 'channels_last' else 'NCDHW'}, " + (
            "compiled" if self.compiled else "eager"
        )


@dataclasses.dataclass
class Plan:
    device: torch.device
    sizes: list[str]
    settings: list[Setting]
    train_batch: int
    infer_batch: int
    rounds: int
    steps: int
    warmup: int
    notes: list[str]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device, help="cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small batches, 1-2 rounds, few settings")
    parser.add_argument("--sizes", default=None, help="comma list of xs,s,m (default: all; xs with --quick on a CPU)")
    parser.add_argument("--precisions", default=None, help="comma list of bf16,fp32 (default: both where meaningful)")
    parser.add_argument("--layouts", default=None, help="comma list of channels_last,ncdhw")
    parser.add_argument("--compile", choices=["off", "on", "both"], default=None)
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--infer-batch", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed round")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end training row")
    parser.add_argument("--e2e-videos", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="loader workers of the end-to-end row")
    parser.add_argument("--out", default="reports/gpu_bench.json")
    return parser.parse_args(argv)


def _pick(value: str | None, default: str) -> list[str]:
    return [v.strip() for v in (value or default).split(",") if v.strip()]


def make_plan(args: argparse.Namespace) -> Plan:
    """What to measure: the full grid on a GPU; on a CPU or with --quick, the rows that say something."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to PyTorch (try --device cpu)")
    cuda, notes = device.type == "cuda", []
    sizes = _pick(args.sizes, "xs" if args.quick and not cuda else "xs,s,m")
    unknown = set(sizes) - set(PAIRS)
    if unknown:
        raise SystemExit(f"--sizes: unknown {sorted(unknown)}; choose from {sorted(PAIRS)}")
    bf16_ok = torch.cuda.is_bf16_supported() if cuda else cpu_has_amx()
    precisions = _pick(args.precisions, "bf16,fp32" if bf16_ok and not (args.quick and not cuda) else "fp32")
    if not bf16_ok and "bf16" in precisions:
        notes.append("bf16 rows on a CPU without AMX run emulated bf16 (slower than float32)")
    if not cuda and args.precisions is None and args.quick:
        notes.append("--quick on a CPU: float32 rows only (the agreement check still runs bf16)")
    elif not cuda and args.precisions is None and not bf16_ok:
        notes.append("no bf16 rows: this CPU has no AMX, so bf16 would be emulated (pass --precisions to force)")
    # --quick: channels-last only (NCDHW trails it by 1.5-2x on an H200; the full run keeps the comparison)
    layouts = _pick(args.layouts, "channels_last" if args.quick else "channels_last,ncdhw")
    compile_mode = args.compile or ("off" if args.quick or not cuda else "both")
    if not cuda and args.compile is None and not args.quick:
        notes.append(
            "no torch.compile rows on a CPU: inductor's C++ build takes minutes per model (--compile on forces it)"
        )
    settings = [Setting(p, lay, False) for p in precisions for lay in layouts] if compile_mode != "on" else []
    if compile_mode == "both":  # compiling takes most of the run: the first precision, channels-last only
        settings += [Setting(precisions[0], layouts[0], True)]
    elif compile_mode == "on":
        settings += [Setting(p, lay, True) for p in precisions for lay in layouts]
    small = args.quick and not cuda
    return Plan(device, sizes, settings,
                train_batch=args.train_batch or (1 if small else 16 if args.quick else 32),
                infer_batch=args.infer_batch or (1 if small else 32 if args.quick else 64),
                rounds=args.rounds or (1 if small else 2 if args.quick else 5),
                steps=args.steps or (2 if small else 5 if args.quick else 10),
                warmup=1 if small else 3, notes=notes)  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clips_per_second(fn: Callable[[], object], batch: int, plan: Plan) -> float:
    """Median over ``plan.rounds`` of ``plan.steps`` calls, after ``plan.warmup`` untimed calls."""
    for _ in range(plan.warmup):
        fn()
    sync(plan.device)
    times = []
    for _ in range(plan.rounds):
        start = time.perf_counter()
        for _ in range(plan.steps):
            fn()
        sync(plan.device)
        times.append(time.perf_counter() - start)
    return plan.steps * batch / statistics.median(times)


def _autocast(device: torch.device, precision: str) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _model_and_input(name: str, setting: Setting, batch: int, device: torch.device) -> tuple[Any, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).to(device)
    x = torch.randn(batch, 3, *model_info(name).reference_input, device=device)
    if setting.layout == "channels_last":
        model, x = model.to(memory_format=CL), x.contiguous(memory_format=CL)
    return model, x


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_rate(name: str, setting: Setting, plan: Plan) -> tuple[float, float | None]:
    """Training clips/s (forward, cross-entropy, backward, AdamW) and the peak memory it allocated."""
    _release(plan.device)
    model, x = _model_and_input(name, setting, plan.train_batch, plan.device)
    y = torch.randint(0, NUM_CLASSES, (plan.train_batch,), device=plan.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model) if setting.compiled else model
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(plan.device, setting.precision):
            loss = F.cross_entropy(run(x).float(), y)
        loss.backward()
        opt.step()

    rate = clips_per_second(step, plan.train_batch, plan)
    return rate, _peak_mib(plan.device)


def infer_rate(name: str, setting: Setting, plan: Plan) -> tuple[float, float | None]:
    """Inference clips/s (a forward under no_grad) and the peak memory it allocated."""
    _release(plan.device)
    model, x = _model_and_input(name, setting, plan.infer_batch, plan.device)
    run = torch.compile(model.eval()) if setting.compiled else model.eval()

    def forward() -> None:
        with torch.no_grad(), _autocast(plan.device, setting.precision):
            run(x)

    rate = clips_per_second(forward, plan.infer_batch, plan)
    return rate, _peak_mib(plan.device)


@contextlib.contextmanager
def _strict_fp32() -> Any:
    """float32 that is float32: TF32 convs/matmuls off (PyTorch allows TF32 in cuDNN convs by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def agreement(name: str, plan: Plan) -> dict[str, Any]:
    """One channels-last forward in float32 and in bf16 autocast: logits' max relative error (to the
    largest float32 logit) and the share of clips whose top-1 class is the same."""
    _release(plan.device)
    batch = 8 if plan.device.type == "cuda" else 2
    model, x = _model_and_input(name, Setting("fp32", "channels_last", False), batch, plan.device)
    model.eval()
    with torch.no_grad(), _strict_fp32():
        ref = model(x).float()
        with _autocast(plan.device, "bf16"):
            low = model(x).float()
    rel = ((low - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
    top1 = (low.argmax(1) == ref.argmax(1)).float().mean().item()
    ok = math.isfinite(rel) and rel < 0.1
    return {"model": name, "max_rel_error": rel, "top1_agreement": top1, "clips": batch, "ok": ok}


def write_ssv2(root: Path, count: int, workers: int) -> Path:
    """An SSv2-layout dataset of ``count`` 240x320 webm/VP9 videos (36 frames, 3 s at 12 fps, like
    SSv2's 240p clips), encoded in ``workers`` processes."""
    classes = ["Pushing something from left to right", "Pushing something from right to left"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "something-something-v2-labels.json").write_text(json.dumps({c: str(i) for i, c in enumerate(classes)}))
    entries = [{"id": str(i), "template": classes[i % 2]} for i in range(count)]
    (root / "something-something-v2-train.json").write_text(json.dumps(entries))
    paths = [root / "20bn-something-something-v2" / f"{i}.webm" for i in range(count)]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        list(pool.map(_write_one, paths))
    return root


def _write_one(path: Path) -> None:
    write_video(path, num_frames=36, size=(240, 320))


def _e2e_overrides(root: Path, out: Path, plan: Plan, quick_cpu: bool, workers: int) -> list[str]:
    frames, scale, crop = ("8", "[128,140]", "112") if quick_cpu else ("16", "[182,228]", "160")
    overrides = [
        "model.name=sevnet_s", "data.format=ssv2", f"data.root={root}", "data.sampling=segment",
        f"data.num_frames={frames}", f"data.train_scale={scale}", f"data.train_crop={crop}",
        f"data.num_workers={workers}", f"train.batch_size={2 if quick_cpu else plan.train_batch}", "train.epochs=1000",
        "train.progress=false", f"train.out_dir={out}", "eval.every_epochs=0",
        f"train.epoch_clips={_epoch_clips(plan, quick_cpu, workers)}",
    ]  # fmt: skip
    if _has_device_setting():
        overrides.append(f"train.device={plan.device}")
    return overrides


def _epoch_clips(plan: Plan, quick_cpu: bool, workers: int) -> int:
    """Clips per end-to-end epoch: at least 4 batches per loader worker, so that the measured epoch is
    the loader's steady rate, not its first batches (one batch per worker is latency, not throughput)."""
    batch = 2 if quick_cpu else plan.train_batch
    return batch * max(4, 4 * workers)


def _has_device_setting() -> bool:
    return "device" in {f.name for f in dataclasses.fields(TrainConfig)}


def end_to_end(plan: Plan, videos: int, workers: int, quick_cpu: bool) -> list[dict[str, Any]]:
    """SEVNet-S trained by the Trainer on real video files (see ``_train_and_time``): on the videos as
    released (240p webm/VP9), on the same videos after ``sevnet data prepare`` (MJPEG, short side 182), and
    on those with ``data.repeats`` (each decode gives several clips): how much of the model-only rate each
    input pipeline sustains."""
    if not _has_device_setting() and plan.device.type == "cpu" and torch.cuda.is_available():
        return [{"skipped": "this sevnet has no train.device setting: the Trainer would train on CUDA, not the CPU"}]
    from sevnet.data.prepare import prepare_dataset

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        raw = write_ssv2(Path(tmp) / "ssv2", videos, os.cpu_count() or 1)
        written_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared = Path(tmp) / "ssv2_prepared"
        prepare_dataset(raw, prepared, short_side=182, workers=os.cpu_count() or 1, progress=False)
        prepared_s = time.perf_counter() - t0
        repeats = 2 if quick_cpu else 4  # a batch must hold a whole number of videos' clips
        sources = (("webm/VP9 as released", raw, written_s, 1), ("prepared MJPEG 182", prepared, prepared_s, 1),
                   (f"prepared MJPEG 182, data.repeats={repeats}", prepared, prepared_s, repeats))  # fmt: skip
        for data, root, seconds, k in sources:
            overrides = [*_e2e_overrides(root, Path(tmp) / f"run_{len(rows)}", plan, quick_cpu, workers),
                         f"data.repeats={k}"]  # fmt: skip
            cfg = load_config(None, overrides)
            alone = load_config(None, [*overrides, "data.num_workers=0", f"train.out_dir={tmp}/alone_{len(rows)}"])
            with contextlib.redirect_stdout(sys.stderr):  # the Trainer's own lines stay out of the table
                result = _train_and_time(cfg, alone, plan, epochs=2 if quick_cpu else 3)
            _release(plan.device)
            clip = f"{cfg.data.num_frames}x{cfg.data.train_crop}x{cfg.data.train_crop}"
            share = result["loader_train_clips_per_s"] / result["model_only_clips_per_s"]
            rows.append({"model": "sevnet_s", "data": data, "clip": clip, "videos": videos, "workers": workers,
                         "batch": cfg.train.batch_size, "made_in_s": seconds, **result, "fraction": share})  # fmt: skip
    return rows


def _train_and_time(cfg: Any, alone_cfg: Any, plan: Plan, epochs: int) -> dict[str, Any]:
    """Clips/s of the last of ``epochs`` epochs (the first warms up the workers and cuDNN), and of the
    same Trainer's step on one loaded batch repeated: the model-only rate of exactly this training.
    The step alone is timed first, by a Trainer of ``alone_cfg`` (the same, without loader workers and
    in its own folder): the training run's persistent workers, still decoding ahead, would take the CPU
    that launches the GPU's kernels."""
    model_only = _step_alone(alone_cfg, plan)
    _release(plan.device)
    trainer = Trainer(cfg)
    rows = [trainer.train_epoch() for _ in range(epochs)]
    return {"setup": trainer._setup_line(), "loader_train_clips_per_s": rows[-1]["train_clips_per_s"],
            "model_only_clips_per_s": model_only, "input_wait_share": rows[-1].get("input_wait_share")}  # fmt: skip


def _step_alone(cfg: Any, plan: Plan) -> float:
    trainer = Trainer(cfg)
    batch = next(iter(trainer.loader))
    return clips_per_second(lambda: trainer.train_step(batch), len(batch["target"]), plan)


def warm_up(device: torch.device, seconds: float = 3.0) -> None:
    """Bring an idle GPU's clocks up (an H200 idles at 345 MHz and boosts to 1980) before the first
    row, which otherwise runs part of its rounds slow: matrix products until ``seconds`` have passed."""
    if device.type != "cuda":
        return
    a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize(device)


def measure(plan: Plan) -> list[dict[str, Any]]:
    """One row per (size, setting): SEVNet and X3D training and inference clips/s, peak memory."""
    have_x3d = "x3d_s" in list_models()
    if not have_x3d:
        plan.notes.append("no X3D columns: PyTorchVideo is not installed (scripts/setup.sh installs it)")
    rows = []
    for size in plan.sizes:
        for setting in plan.settings:
            row: dict[str, Any] = {"size": size.upper(), **dataclasses.asdict(setting)}
            for family, name in zip(("sevnet", "x3d"), PAIRS[size]):
                if family == "x3d" and not have_x3d:
                    continue
                t, h, w = model_info(name).reference_input
                row[f"{family}_input"] = f"{t}x{h}x{w}"
                row[f"{family}_train"], row[f"{family}_train_mib"] = train_rate(name, setting, plan)
                row[f"{family}_infer"], row[f"{family}_infer_mib"] = infer_rate(name, setting, plan)
            if have_x3d:
                row["train_ratio"] = row["sevnet_train"] / row["x3d_train"]
                row["infer_ratio"] = row["sevnet_infer"] / row["x3d_infer"]
            rows.append(row)
            print(f"  measured {size.upper()} {setting.label()}", file=sys.stderr, flush=True)
    return rows


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _n(value: Any, digits: int | None = None) -> str:
    """A figure with 3 significant digits or more (clips/s span 0.5 on a CPU to 10,000 on a GPU)."""
    if value is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The tables: model-only rows, the bf16 agreement check, the end-to-end row."""
    lines = [f"{result['where']}; train batch {result['train_batch']}, inference batch {result['infer_batch']}; "
             f"median of {result['rounds']} rounds of {result['steps']} steps", "",
             "| size | setting | SEVNet input | X3D input | train clips/s SEVNet / X3D | ratio "
             "| inference clips/s SEVNet / X3D | ratio | train peak MiB SEVNet / X3D |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        setting = Setting(r["precision"], r["layout"], r["compiled"]).label()
        lines.append(
            f"| {r['size']} | {setting} | {r['sevnet_input']} | {r.get('x3d_input', 'n/a')} "
            f"| {_n(r['sevnet_train'])} / {_n(r.get('x3d_train'))} | {_n(r.get('train_ratio'), 2)}x "
            f"| {_n(r['sevnet_infer'])} / {_n(r.get('x3d_infer'))} | {_n(r.get('infer_ratio'), 2)}x "
            f"| {_n(r['sevnet_train_mib'])} / {_n(r.get('x3d_train_mib'))} |"
        )
    lines += ["", "| bf16 vs float32, one forward | max rel. error of logits | top-1 agreement | verdict |",
              "|---|---|---|---|"]  # fmt: skip
    for a in result["agreement"]:
        verdict = "ok" if a["ok"] else "CHECK: bf16 logits far from float32"
        lines.append(f"| {a['model']} ({a['clips']} clips) | {a['max_rel_error']:.4f} | {a['top1_agreement']:.0%} "
                     f"| {verdict} |")  # fmt: skip
    rows = result.get("e2e") or []
    done = [e for e in rows if "skipped" not in e and "error" not in e]
    if done:
        lines += ["", "| end-to-end (sevnet train, real loader) | data | clip | videos / workers | train clips/s "
                  "| Trainer step alone clips/s | share | input wait |", "|---" * 8 + "|"]  # fmt: skip
        lines += [f"| SEVNet-S, {e['setup']} | {e['data']} | {e['clip']} | {e['videos']} / {e['workers']} "
                  f"| {e['loader_train_clips_per_s']:.1f} | {e['model_only_clips_per_s']:.1f} | {e['fraction']:.0%} "
                  f"| {_share(e.get('input_wait_share'))} |" for e in done]  # fmt: skip
    lines += [f"end-to-end row: {e.get('skipped') or e.get('error')}" for e in rows if e not in done]
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, cudnn.benchmark on"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    torch.backends.cudnn.benchmark = True
    quick_cpu = args.quick and plan.device.type == "cpu"
    counts = {k: getattr(plan, k) for k in ("train_batch", "infer_batch", "rounds", "steps")}
    result: dict[str, Any] = {"where": describe(plan.device), "quick": args.quick, "notes": plan.notes, **counts}
    warm_up(plan.device)
    result["rows"] = measure(plan)
    result["agreement"] = [agreement(name, plan) for size in plan.sizes for name in PAIRS[size]
                           if name in list_models()]  # fmt: skip
    if not args.no_e2e:
        workers = args.workers if args.workers is not None else min(15, max(1, (os.cpu_count() or 2) - 1))
        videos = args.e2e_videos or (4 if quick_cpu else 192 if args.quick else 512)
        try:
            result["e2e"] = end_to_end(plan, videos, workers, quick_cpu)
        except Exception as err:  # reported in the table and the exit status, not lost
            result["e2e"] = [{"error": f"{type(err).__name__}: {err}"}]
    text = markdown(result)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    failed = any("error" in e for e in result.get("e2e", [])) or not all(a["ok"] for a in result["agreement"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

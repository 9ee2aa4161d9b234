"""Complexity profile: parameters, multiply-adds, activation memory and CPU latency, one table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from sevnet.errors import InputError
from sevnet.timing import wall_seconds

from .complexity import count_gmacs, count_params
from .registry import create_model, model_info

WIDE_SPREAD = 0.5  # (max - min) / median of the latency repeats above which a row is flagged


@dataclass
class ProfileRow:
    model: str
    input: str  # "TxHxW"
    params_m: float
    gmacs: float  # multiply-adds, billions (fvcore / X3D convention)
    activation_mb: float  # sum of leaf-module outputs of one forward pass (what training keeps)
    latency_ms: float  # median over repeats, batch 1, float32, eager
    threads: int
    latency_min_ms: float = 0.0  # fastest and slowest repeat: their spread says how busy the CPU was
    latency_max_ms: float = 0.0
    reference: bool = True  # at the model's reference input (else at the common input)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def spread(self) -> float:
        return (self.latency_max_ms - self.latency_min_ms) / max(self.latency_ms, 1e-9)


def activation_megabytes(model: nn.Module, x: torch.Tensor) -> float:
    """Bytes of every leaf module's output in one forward pass: a proxy for training memory."""
    total = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total / 2**20


@torch.inference_mode()
def latencies_ms(model: nn.Module, x: torch.Tensor, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall time (ms) of each of ``repeats`` forward passes after ``warmup`` untimed ones (on a GPU,
    each pass waits for its kernels: CUDA calls return before the work is done)."""

    def forward() -> None:
        model(x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    return [t * 1e3 for t in wall_seconds(forward, repeats, warmup)]


def parse_input(text: str) -> tuple[int, int, int]:
    """``"16x160x160"`` -> (16, 160, 160)."""
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"input must look like TxHxW (e.g. 16x160x160), got {text!r}") from None
    return t, h, w


def profile_model(
    name: str, thw: tuple[int, int, int], repeats: int = 5, threads: int | None = None, reference: bool = True,
    device: str | torch.device = "cpu", **overrides: object,
) -> ProfileRow:  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    model = create_model(name, **overrides).eval().to(device)
    x = torch.randn(1, 3, *thw, device=device)
    times = latencies_ms(model, x, repeats=repeats)
    return ProfileRow(
        model=name,
        input="x".join(map(str, thw)),
        params_m=count_params(model) / 1e6,
        gmacs=count_gmacs(model, tuple(x.shape)),
        activation_mb=activation_megabytes(model, x),
        latency_ms=statistics.median(times),
        threads=torch.get_num_threads(),
        latency_min_ms=min(times),
        latency_max_ms=max(times),
        reference=reference,
    )


def profile_models(
    names: list[str], common_input: tuple[int, int, int] | None, repeats: int = 5, threads: int | None = None,
    device: str | torch.device = "cpu",
) -> list[ProfileRow]:  # fmt: skip
    """Each model at its reference input, then (if given) all at the common input, on ``device``."""
    rows = [profile_model(n, model_info(n).reference_input, repeats, threads, device=device) for n in names]
    if common_input is not None:
        rows += [profile_model(n, common_input, repeats, threads, False, device) for n in names]
    return rows


def format_table(rows: list[ProfileRow]) -> str:
    """Reference-input rows, then common-input rows, each under its own header; latency as
    min / median / max over the repeats, and a warning when a row's spread is wide."""
    head = (
        f"{'model':<14}{'input TxHxW':>13}{'params (M)':>12}{'GMACs*':>9}{'act. (MB)':>11}"
        f"{'latency ms min/median/max':>29}{'clips/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for reference, title in ((True, "at each model's reference input"), (False, "at the common input")):
        group = [r for r in rows if r.reference == reference]
        if group:
            lines.append(f"-- {title}" + ("" if reference else f" {group[0].input}"))
        for r in group:
            spread = f"{r.latency_min_ms:.1f} / {r.latency_ms:.1f} / {r.latency_max_ms:.1f}"
            lines.append(
                f"{r.model:<14}{r.input:>13}{r.params_m:>12.2f}{r.gmacs:>9.3f}{r.activation_mb:>11.1f}"
                f"{spread:>29}{1e3 / r.latency_ms:>9.1f}"
            )
    threads = rows[0].threads if rows else torch.get_num_threads()
    lines.append(
        f"* GMACs = multiply-adds (the 'FLOPs' of video papers and fvcore). Latency: batch 1, float32, "
        f"eager, {threads} CPU thread(s); compare only rows from one run."
    )
    wide = [f"{r.model} {r.input}" for r in rows if r.spread > WIDE_SPREAD]
    if wide:
        lines.append(
            f"warning: latency varied by more than {WIDE_SPREAD:.0%} of the median over the repeats for "
            f"{', '.join(wide)}: the CPU was busy, so these latencies are not comparable; rerun on an idle "
            "machine (or with more --repeats)"
        )
    return "\n".join(lines)


def plot_profile(rows: list[ProfileRow], path: str) -> None:
    """Two panels: GMACs vs parameters at the reference inputs (SEVNets vs peers, with a legend), and
    the latency of each model (median, min-max bar) at the common input, or the reference one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, (ax, lat) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    ref = [r for r in rows if r.reference]
    for label, color, mine in (("SEVNet", "tab:red", True), ("peers", "tab:blue", False)):
        group = [r for r in ref if r.model.startswith("sevnet") == mine]
        if group:
            ax.scatter([r.params_m for r in group], [r.gmacs for r in group], color=color, label=label, zorder=3)
    for i, r in enumerate(ref):  # labels alternate above / below their point so neighbours do not overlap
        ax.annotate(f"{r.model} ({r.input})", (r.params_m, r.gmacs), xytext=(6, 8 if i % 2 else -12),
                    textcoords="offset points", fontsize=7)  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="parameters (M)", ylabel="GMACs (multiply-adds)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())  # only the decades are labelled: no overlapping ticks
    ax.margins(0.25)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("complexity at each model's reference input", fontsize=10)
    timed = [r for r in rows if not r.reference] or ref
    names = [r.model for r in timed]
    med = np.array([r.latency_ms for r in timed])
    err = np.array([[r.latency_ms - r.latency_min_ms for r in timed], [r.latency_max_ms - r.latency_ms for r in timed]])
    colors = ["tab:red" if n.startswith("sevnet") else "tab:blue" for n in names]
    lat.barh(range(len(timed)), med, xerr=err, color=colors, capsize=3)
    lat.set_yticks(range(len(timed)), names, fontsize=8)
    lat.invert_yaxis()
    where = f"at {timed[0].input}" if not timed[0].reference else "at each reference input"
    lat.set(xlabel=f"latency (ms), batch 1, {timed[0].threads} thread(s): median, min-max bar")
    lat.set_title(f"CPU latency {where}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

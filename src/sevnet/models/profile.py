"""Complexity profile: parameters, multiply-adds, activation memory and CPU latency, one table."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sevnet.timing import median_seconds

from .complexity import count_gmacs, count_params
from .registry import create_model, model_info


@dataclass
class ProfileRow:
    model: str
    input: str  # "TxHxW"
    params_m: float
    gmacs: float  # multiply-adds, billions (fvcore / X3D convention)
    activation_mb: float  # sum of leaf-module outputs of one forward pass (what training keeps)
    latency_ms: float  # median over repeats, batch 1, float32, eager
    threads: int

    def as_dict(self) -> dict:
        return asdict(self)


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
def latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` forward passes after ``warmup`` untimed ones."""
    return median_seconds(lambda: model(x), repeats, warmup) * 1e3


def parse_input(text: str) -> tuple[int, int, int]:
    """``"16x160x160"`` -> (16, 160, 160)."""
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"input must look like TxHxW (e.g. 16x160x160), got {text!r}") from None
    return t, h, w


def profile_model(
    name: str, thw: tuple[int, int, int], repeats: int = 5, threads: int | None = None, **overrides: object
) -> ProfileRow:
    if threads:
        torch.set_num_threads(threads)
    model = create_model(name, **overrides).eval()
    x = torch.randn(1, 3, *thw)
    return ProfileRow(
        model=name,
        input="x".join(map(str, thw)),
        params_m=count_params(model) / 1e6,
        gmacs=count_gmacs(model, tuple(x.shape)),
        activation_mb=activation_megabytes(model, x),
        latency_ms=latency_ms(model, x, repeats=repeats),
        threads=torch.get_num_threads(),
    )


def profile_models(
    names: list[str], common_input: tuple[int, int, int] | None, repeats: int = 5, threads: int | None = None
) -> list[ProfileRow]:
    """Each model at its reference input, then (if given) all at the common input."""
    rows = [profile_model(n, model_info(n).reference_input, repeats, threads) for n in names]
    if common_input is not None:
        rows += [profile_model(n, common_input, repeats, threads) for n in names]
    return rows


def format_table(rows: list[ProfileRow]) -> str:
    head = (
        f"{'model':<14}{'input TxHxW':>13}{'params (M)':>12}{'GMACs*':>9}{'act. (MB)':>11}"
        f"{'latency (ms)':>14}{'clips/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.model:<14}{r.input:>13}{r.params_m:>12.2f}{r.gmacs:>9.3f}{r.activation_mb:>11.1f}"
            f"{r.latency_ms:>14.1f}{1e3 / r.latency_ms:>9.1f}"
        )
    threads = rows[0].threads if rows else torch.get_num_threads()
    lines.append(
        f"* GMACs = multiply-adds (the 'FLOPs' of video papers and fvcore). Latency: batch 1, float32, "
        f"eager, median, {threads} CPU thread(s); compare only rows from one run."
    )
    return "\n".join(lines)


def plot_gmacs_vs_params(rows: list[ProfileRow], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = {}
    for r in rows:  # reference-input rows come first: one point per model
        seen.setdefault(r.model, r)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in seen.values():
        color = "tab:red" if r.model.startswith("sevnet") else "tab:blue"
        ax.scatter(r.params_m, r.gmacs, color=color)
        ax.annotate(f"{r.model}\n{r.input}", (r.params_m, r.gmacs), fontsize=7)
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("GMACs at reference input (multiply-adds)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Complexity at each model's reference input")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

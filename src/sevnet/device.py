"""Which device a process computes on: one rule for training, evaluation, inference and the demo.

A setting is ``auto | cpu | cuda | cuda:N``. ``auto`` takes the GPU when PyTorch sees one, else the
CPU. ``cuda`` is GPU number LOCAL_RANK, so that under torchrun each process of a node takes its own
GPU (the usual one process per GPU); ``cuda:N`` names one GPU and so suits one process only. A
setting that cannot be met (no GPU, a GPU number past the count, more processes on a node than it
has GPUs) is an error naming the setting, the counts and what to write instead; it never falls back
to another device silently.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import torch

from sevnet.errors import SevnetError

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"
DEVICE_HELP = "auto (a GPU when PyTorch sees one, else the CPU) | cpu | cuda | cuda:N (default auto)"
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class DeviceError(SevnetError, ValueError):
    """A device setting that this machine (or this torchrun launch) cannot honour."""


def check_device_spec(spec: str, key: str = "train.device") -> str:
    """``spec`` normalised (stripped, lower case) if it is a valid setting, else a DeviceError naming ``key``."""
    text = str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"{key}={spec!r}: expected {DEVICE_CHOICES}")
    return text


def resolve_device(
    spec: str = "auto", key: str = "train.device", local_rank: int | None = None, world_size: int | None = None
) -> torch.device:
    """The device ``spec`` means for this process (``local_rank`` / ``world_size`` default to torchrun's
    LOCAL_RANK / WORLD_SIZE, 0 / 1 without torchrun)."""
    text = check_device_spec(spec, key)
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"{key}={text}: PyTorch sees no CUDA GPU here (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            f"use {key}=cpu, or {key}=auto to take a GPU only where there is one"
        )
    count = torch.cuda.device_count()
    if ":" in text:
        index = int(text.split(":")[1])
        if index >= count:
            raise DeviceError(f"{key}={text}: this machine has {count} CUDA GPU(s), numbered 0 to {count - 1}")
        if world_size > 1:
            raise DeviceError(
                f"{key}={text} names one GPU for all {world_size} torchrun processes; use {key}=cuda "
                "(each process takes GPU number LOCAL_RANK), or CUDA_VISIBLE_DEVICES to choose the GPUs"
            )
        return torch.device("cuda", index)
    if local_rank >= count:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(local_rank + 1))
        raise DeviceError(
            f"torchrun started {per_node} processes on this node but it has {count} CUDA GPU(s) "
            f"(process LOCAL_RANK={local_rank} has none): one process per GPU, so --nproc-per-node={count} "
            f"or fewer; or {key}=cpu to train on the CPU with gloo"
        )
    return torch.device("cuda", local_rank)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference: ``auto`` is bfloat16 on a CUDA GPU that supports it (the
    agreement with float32 is checked by benchmarks/gpu_bench.py), float32 elsewhere; ``float32`` or
    ``bf16`` force one. None means float32 (no autocast)."""
    choice = str(precision).strip().lower()
    if choice not in ("auto", "float32", "bf16"):
        raise DeviceError(f"precision={precision!r}: expected auto | float32 | bf16")
    if choice == "float32":
        return None
    if choice == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for float32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters (or buffers) live; the CPU for a model that has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    """``cpu, 2 threads`` or ``cuda:0 (NVIDIA H200)``: what a log line says a run computes on."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device.type}, {torch.get_num_threads()} threads"

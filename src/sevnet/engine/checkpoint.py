"""Checkpoints: one safetensors file holding model weights, optimizer state and RNG state, with
JSON metadata (model name and overrides, class names, inference settings, training position).

No pickle anywhere, so loading a checkpoint cannot execute code. Writes are atomic: the file is
written beside the target, fsynced, then renamed over it, so a kill during a save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sevnet.errors import SevnetError

FORMAT = "sevnet-checkpoint/2"  # 2: named block layers (sevnet.models.compat reads 1)
FORMAT_V1 = "sevnet-checkpoint/1"


# What torch.compile (OptimizedModule._orig_mod) and DDP (.module) wrap a model in; also the
# prefixes they add to state-dict keys.
WRAPPERS = ("module", "_orig_mod")


class CheckpointError(SevnetError, RuntimeError):
    """An unreadable, foreign or mismatched checkpoint; the message names the file."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside any DDP / torch.compile wrappers (in any order or nesting), so that
    checkpoints hold the same keys however the run was wrapped."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif type(model).__name__ == "OptimizedModule":  # torch.compile (no torch._dynamo import here)
            model = model._orig_mod
        else:
            return model


def unwrap_key(key: str) -> str:
    """A state-dict key without the ``module.`` / ``_orig_mod.`` prefixes wrappers add."""
    prefixes = tuple(f"{a}." for a in WRAPPERS)
    while key.startswith(prefixes):
        key = key.split(".", 1)[1]
    return key


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        plain["state"][str(pid)] = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(pid)][key] = value
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in plain["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``path`` (a ``.safetensors`` file). ``meta`` must be JSON-serialisable;
    ``train_state`` may hold tensors (e.g. RNG states) at its top level and JSON values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = unwrap_model(model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header: dict[str, str] = {"format": FORMAT, "meta": json.dumps(meta)}
    if optimizer is not None:
        opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
        tensors |= opt_tensors
        header["optimizer"] = json.dumps(opt_plain)
    if train_state is not None:
        plain = {}
        for key, value in train_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[key] = value
        header["train_state"] = json.dumps(plain)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header of a sevnet checkpoint; refuses anything else (pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a sevnet checkpoint (safetensors expected; pickled .pt/.pth files are refused "
            f"because loading them can execute code): {err}"
        ) from None
    if header.get("format") == FORMAT_V1:
        return _upgrade_v1(tensors, header)
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sevnet checkpoint (format {header.get('format')!r})")
    return tensors, header


def _upgrade_v1(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Format 1 -> 2: rename the model's keys and pin its architecture options (see models.compat)."""
    from sevnet.models.compat import remap_v1_keys, upgrade_v1_meta

    meta = upgrade_v1_meta(json.loads(header.get("meta", "{}")))
    block = meta.get("model_overrides", {}).get("block", "sev")
    model = remap_v1_keys({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}, block)
    rest = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    return rest | {f"model.{k}": v for k, v in model.items()}, {**header, "format": FORMAT, "meta": json.dumps(meta)}


def read_meta(path: str | Path) -> dict[str, Any]:
    return json.loads(read_checkpoint(path)[1]["meta"])


def load_model(
    path: str | Path, expect_model: str | None = None, expect_num_classes: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    from sevnet.models import create_model

    tensors, header = read_checkpoint(path)
    meta = json.loads(header["meta"])
    if expect_model is not None and meta["model"] != expect_model:
        raise CheckpointError(f"{path}: holds model {meta['model']!r}, expected {expect_model!r}")
    if expect_num_classes is not None and meta["num_classes"] != expect_num_classes:
        raise CheckpointError(f"{path}: has {meta['num_classes']} classes, expected {expect_num_classes}")
    model = create_model(meta["model"], num_classes=meta["num_classes"], **meta.get("model_overrides", {}))
    load_weights(model, tensors, path)
    return model.eval(), meta


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    state = {unwrap_key(k.removeprefix("model.")): v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model: {str(err)[:500]}") from None


def load_training_state(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model (however wrapped) + optimizer in place; return (JSON train state, tensor train state)."""
    tensors, header = read_checkpoint(path)
    load_weights(unwrap_model(model), tensors, path)
    if "optimizer" in header:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, json.loads(header["optimizer"])))
    plain = json.loads(header.get("train_state", "{}"))
    state_tensors = {k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")}
    return plain, state_tensors

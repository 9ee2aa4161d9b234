"""Checkpoints: one safetensors file holding model weights, optimizer state and RNG state, with
JSON metadata (model name and overrides, class names, inference settings, training position).

No pickle anywhere, so loading a checkpoint cannot execute code. Writes are atomic: the file is
written beside the target, fsynced, then renamed over it, so a kill during a save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sevnet.errors import SevnetError

from .card import ModelCard

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


def weights_digest(weights: nn.Module | dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's weights by name (equal digests: bit-identical weights). A model (wrappers
    unwrapped) and the tensors of its checkpoint (``read_checkpoint``; their ``model.*`` entries) give the
    same digest, so a run's summary.json, its checkpoints and an exported model's sidecar compare."""
    if isinstance(weights, nn.Module):
        tensors = {f"model.{k}": v for k, v in unwrap_model(weights).state_dict().items()}
    else:
        tensors = {k: v for k, v in weights.items() if k.startswith("model.")}
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
    try:
        _write_atomically(path, tensors, header)
    except (SafetensorError, OSError) as err:
        kept = "the previous checkpoint there is intact" if path.is_file() else "nothing was written"
        full = "; the disk is full" if "No space left" in str(err) or getattr(err, "errno", None) == 28 else ""
        raise CheckpointError(f"{path}: could not save the checkpoint ({err}){full}; {kept}") from None
    return path


def _write_atomically(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Write a temp file beside ``path``, fsync, rename over it; the temp never outlives a failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 (kept by save_file): as readable as an export
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


def _umask() -> int:
    """The process's umask (read by setting it, then restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header of a sevnet checkpoint; refuses anything else (pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    tensors, header = read_safetensors(path, "not a sevnet checkpoint (safetensors expected")
    return checked_checkpoint(path, tensors, header)


def is_sevnet_header(header: dict[str, str]) -> bool:
    """A sevnet checkpoint of any format version (``checked_checkpoint`` upgrades older ones)."""
    return str(header.get("format", "")).startswith(FORMAT.split("/")[0] + "/")


def read_safetensors(path: Path, refusal: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header) of any safetensors file; anything else (a pickle) is a CheckpointError that
    starts with ``refusal`` and says why pickles are refused."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: {refusal}; pickled .pt/.pth files are refused because loading them can execute code): {err}"
        ) from None
    return tensors, header


def checked_checkpoint(
    path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A sevnet checkpoint's tensors and header, its JSON fields checked, format 1 upgraded."""
    for key in ("meta", "optimizer", "train_state"):
        try:
            json.loads(header.get(key, "{}"))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: header field {key!r} is not valid JSON ({err})") from None
    if header.get("format") == FORMAT_V1:
        tensors, header = _upgrade_v1(tensors, header)
    elif header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sevnet checkpoint (format {header.get('format')!r})")
    if extra := sorted(k for k in tensors if not k.startswith(TENSOR_PREFIXES)):
        raise CheckpointError(f"{path}: holds tensors sevnet never writes: {_names(extra)}")
    return tensors, header


TENSOR_PREFIXES = ("model.", "optim.", "state.")  # model weights, optimizer state, training state


def _names(keys: list[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf, each with how many of its values do."""
    bad = []
    for key, value in tensors.items():
        if value.is_floating_point() and not (finite := torch.isfinite(value)).all():
            bad.append(f"{key} ({int((~finite).sum())} of {value.numel()} values)")
    return bad


def weight_problems(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    """Why ``state`` must not be loaded into a model whose state dict is ``expected``: tensors the model
    lacks, a dtype other than the model's (int8 weights would be cast to floats and predict a flat
    distribution), NaN/inf values (every prediction NaN). None when it may be loaded."""
    if extra := sorted(set(state) - set(expected)):
        return f"holds tensors the model does not have: {_names(extra)}"
    dtypes = [f"{k} is {v.dtype}, the model's is {expected[k].dtype}" for k, v in state.items()
              if v.dtype != expected[k].dtype]  # fmt: skip
    if dtypes:
        return f"weights of the wrong type (a quantized or converted file?): {_names(dtypes, 3)}"
    if bad := nonfinite_tensors(state):
        return f"weights are not finite (NaN/inf) in {_names(bad, 3)}: its run diverged, or the file was altered"
    return None


def _upgrade_v1(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict]:
    """Format 1 -> 2: rename the model's keys and pin its architecture options (see models.compat)."""
    from sevnet.models.compat import remap_v1_keys

    card = ModelCard.from_meta(json.loads(header.get("meta", "{}")), version=1)
    meta = card.to_meta()
    block = card.model_options.get("block", "sev")
    model = remap_v1_keys({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}, block)
    rest = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    return rest | {f"model.{k}": v for k, v in model.items()}, {**header, "format": FORMAT, "meta": json.dumps(meta)}


def read_meta(path: str | Path) -> dict[str, Any]:
    return json.loads(read_checkpoint(path)[1]["meta"])


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint (format 1 upgraded)."""
    return ModelCard.from_meta(read_meta(path))


# What inference reads from a checkpoint's metadata: key -> required type.
META_KEYS: dict[str, type | tuple[type, ...]] = {"model": str, "num_classes": int, "class_names": list, "data": dict}
META_DATA_KEYS = ("num_frames", "eval_scale", "eval_crop", "mean", "std")


def check_meta(meta: Any, path: str | Path) -> dict[str, Any]:
    """``meta`` if it has what rebuilding and running the model needs; else a CheckpointError naming the key."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: no model metadata ('meta' missing from the header)")
    for key, kind in META_KEYS.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{path}: metadata key {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    if not isinstance(meta.get("model_overrides", {}), dict):
        raise CheckpointError(f"{path}: metadata key 'model_overrides' is not a mapping")
    names = meta["class_names"]
    if len(names) != meta["num_classes"] or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: metadata 'class_names' must be {meta['num_classes']} strings (num_classes)")
    partners, count = meta.get("both_ways"), meta["num_classes"]  # each class's partner (engine/both_ways.py)
    valid = lambda p: p is None or (type(p) is int and 0 <= p < count)  # noqa: E731
    if partners is not None and not (
        isinstance(partners, list) and len(partners) == count and all(map(valid, partners))
    ):
        raise CheckpointError(f"{path}: metadata 'both_ways' must be {count} class indices or nulls (num_classes)")
    missing = [k for k in META_DATA_KEYS if k not in meta["data"]]
    if missing:
        raise CheckpointError(f"{path}: metadata 'data' lacks {', '.join(missing)}")
    from sevnet.data.config import inference_config
    from sevnet.errors import ConfigError

    try:  # a NaN mean or a zero crop recorded in the file: named with the file, before any video is read
        inference_config(meta["data"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: its recorded preprocessing is invalid: {err}") from None
    return meta


def load_model(
    path: str | Path, expect_model: str | None = None, expect_num_classes: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    from sevnet.models import create_model

    tensors, header = read_checkpoint(path)
    meta = check_meta(json.loads(header["meta"]) if "meta" in header else None, path)
    card = ModelCard.from_meta(meta)
    if expect_model is not None and card.model != expect_model:
        raise CheckpointError(f"{path}: holds model {card.model!r}, expected {expect_model!r}")
    if expect_num_classes is not None and card.num_classes != expect_num_classes:
        raise CheckpointError(f"{path}: has {card.num_classes} classes, expected {expect_num_classes}")
    check_shapes(path, meta, tensors)
    try:
        model = create_model(card.model, num_classes=card.num_classes, **card.model_options)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its metadata describes no model sevnet can build ({err})") from None
    load_weights(model, tensors, path)
    return model.eval(), meta


def check_shapes(path: str | Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Refuse metadata that disagrees with the stored tensors before any real model is built: the
    model is first built on the ``meta`` device (no memory), so a small file whose metadata claims a
    million classes is refused in milliseconds instead of allocating gigabytes."""
    from sevnet.models import create_model

    card = ModelCard.from_meta(meta)
    try:
        with torch.device("meta"):
            skeleton = create_model(card.model, num_classes=card.num_classes, **card.model_options)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its metadata describes no model sevnet can build ({err})") from None
    stored = {unwrap_key(k.removeprefix("model.")): v.shape for k, v in tensors.items() if k.startswith("model.")}
    for key, value in skeleton.state_dict().items():
        if key in stored and stored[key] != value.shape:
            raise CheckpointError(
                f"{path}: its metadata (model {card.model!r}, {card.num_classes} classes) describes {key} of "
                f"shape {tuple(value.shape)}, but the file holds {tuple(stored[key])}"
            )


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load the ``model.`` tensors strictly, after refusing extra, wrongly typed or non-finite ones."""
    state = {unwrap_key(k.removeprefix("model.")): v for k, v in tensors.items() if k.startswith("model.")}
    if problem := weight_problems(state, model.state_dict()):
        raise CheckpointError(f"{path}: {problem}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the model: {str(err)[:500]}") from None


def load_training_state(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, expect: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model (however wrapped) + optimizer in place; return (JSON train state, tensor train state).
    With ``expect`` (this run's checkpoint metadata), a checkpoint of another model or class list is
    refused before anything is loaded; so is a final model (no training state) or a damaged one."""
    tensors, header = read_checkpoint(path)
    if "train_state" not in header or "state.rng_cpu" not in tensors:
        raise CheckpointError(
            f"{path}: not a training checkpoint (no training state; a final model.safetensors?); "
            f"--resume continues from the last.safetensors a run writes"
        )
    try:
        plain = json.loads(header["train_state"])
        if expect is not None:
            _check_same_run(path, json.loads(header["meta"]), expect)
        load_weights(unwrap_model(model), tensors, path)
        if "optimizer" in header:
            optimizer.load_state_dict(_unflatten_optimizer(tensors, json.loads(header["optimizer"])))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: damaged training state ({type(err).__name__}: {err})") from None
    state_tensors = {k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")}
    return plain, state_tensors


def _check_same_run(path: str | Path, meta: dict[str, Any], expect: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint whose model or classes differ from the config's."""

    def optim(m: dict[str, Any]) -> Any:
        return (ModelCard.from_meta(m).provenance.config or {}).get("optim", {}).get("name")

    theirs_card, our_card = ModelCard.from_meta(meta), ModelCard.from_meta(expect)
    checks = [(getattr(theirs_card, k), getattr(our_card, k), what) for k, what in
              (("model", "model"), ("num_classes", "number of classes"), ("class_names", "class names"))]  # fmt: skip
    for theirs, ours, what in [*checks, (optim(meta), optim(expect), "optimizer (optim.name)")]:
        if theirs != ours:
            theirs, ours = _short(theirs), _short(ours)
            raise CheckpointError(
                f"{path}: was written by a run with another {what} ({theirs}; this config: {ours}); --resume "
                f"needs the run's own config (its config.yaml), or train into another train.out_dir"
            )


# Keys a resumed run may change without changing what is trained (where the data is, how it is
# loaded and cached, what is printed, how it is evaluated): noted, not refused. Any other change
# (a schedule, a size, the model, the data's content) is refused unless ``--allow-changed`` names it.
RESUME_FREE = (
    "train.progress", "train.log_every", "train.ckpt_every_steps", "train.out_dir", "train.device", "model.init_from",
    "data.root", "data.video_dir", "data.split_file", "data.num_workers", "data.worker_nice", "data.cache",
    "data.cache_dir", "eval.",
)  # fmt: skip


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def _matches(key: str, patterns: Collection[str]) -> bool:
    """``key`` is one of ``patterns``, or under one (``eval.`` or ``eval`` covers ``eval.batch_size``)."""
    return any(key == p or key.startswith(p if p.endswith(".") else p + ".") for p in patterns)


def check_resume_config(
    path: str | Path, recorded: dict[str, Any] | None, current: dict[str, Any], allow: Collection[str] = ()
) -> list[str]:
    """Compare the config a checkpoint was trained with (``meta["config"]``) with this run's. Changes of
    ``RESUME_FREE`` keys and of the keys in ``allow`` are returned (to be noted); any other change is a
    CheckpointError naming each changed key with its old and new value, and how to go on."""
    if not isinstance(recorded, dict):  # a checkpoint from before configs were recorded: nothing to compare
        return []
    from .config import ExperimentConfig, to_container

    # A key the run's sevnet did not have yet (a newer schema) counts as its default, not as a change.
    old = _flatten(to_container(ExperimentConfig())) | _flatten(recorded)
    new = _flatten(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = {k: f"{k}: {_short(old.get(k, '<unset>'))} -> {_short(new.get(k, '<unset>'))}" for k in changed}
    refused = [k for k in changed if not _matches(k, RESUME_FREE) and not _matches(k, allow)]
    if refused:
        raise CheckpointError(
            f"{path}: --resume with a config that differs from the run's: {'; '.join(shown[k] for k in refused)}. "
            f"Resume with the run's own config.yaml; or, to go on with the change (e.g. a longer schedule), add "
            f"--allow-changed {','.join(refused)}; or train into another train.out_dir"
        )
    return [shown[k] for k in changed]


def read_recorded_config(path: str | Path) -> dict[str, Any] | None:
    """The config recorded in a checkpoint's metadata (header only: no tensor is read), or None."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return ModelCard.from_meta(json.loads(header.get("meta", "{}"))).provenance.config
    except (SafetensorError, OSError, ValueError, AttributeError):
        return None  # a damaged file is named by load_training_state


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."

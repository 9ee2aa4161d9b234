"""Trainer unit tests: tiny in-memory clips and models, no video, seconds in all.

NaN policies, gradient accumulation, the resume position, time budgets, fine-tuning from another
checkpoint, config enums, evaluation failures, and torch.compile-wrapped checkpoints."""

from __future__ import annotations

import copy
import json
import math
import pickle
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from sevnet import create_model
from sevnet.data import DataConfig
from sevnet.engine import CheckpointError, NonFiniteLossError, Trainer, TrainState, load_config
from sevnet.engine.checkpoint import save_checkpoint
from sevnet.engine.config import EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from sevnet.engine.finetune import init_from_checkpoint
from sevnet.engine.runlog import epoch_line

SHAPE = (3, 2, 4, 4)  # (C, T, H, W) of a clip


class Clips(Dataset):
    """``n`` random clips whose class shifts their mean: a linear model learns it in a few steps."""

    def __init__(self, n: int, num_classes: int = 2, train: bool = True, seed: int = 0, fail: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, num_classes, (n,), generator=g)
        self.x = torch.randn(n, *SHAPE, generator=g) + self.y.view(-1, 1, 1, 1, 1).float()
        self.classes = [f"class {i}" for i in range(num_classes)]
        self.num_classes, self.multi_label, self.train, self.fail = num_classes, False, train, fail

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if self.fail:
            raise RuntimeError("the validation disk went away")
        i = key[0] if isinstance(key, tuple) else key
        clip = self.x[i] if self.train else self.x[i].unsqueeze(0)  # evaluation: (views, C, T, H, W)
        return {"clip": clip, "target": self.y[i], "index": i}


def linear_model(num_classes: int = 2) -> nn.Module:
    """BN-free and dropout-free: accumulation and resume compare exactly."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(torch.Size(SHAPE).numel(), num_classes))


def config(out: Path, **extra: object) -> ExperimentConfig:
    """A small run's config; ``extra``: ``{"section.key": value}`` set with ``dataclasses.replace``."""
    cfg = ExperimentConfig(
        data=DataConfig(num_workers=0),
        optim=OptimConfig(base_batch=4, lr=0.1, warmup_epochs=0.5, weight_decay=1e-3),
        # float32: these tests compare trainer mechanics to exact arithmetic (amp auto is bf16 on an AMX CPU)
        train=TrainConfig(out_dir=str(out), progress=False, batch_size=4, epochs=3, amp="off", device="cpu"),
        eval=EvalConfig(batch_size=8),
    )
    for dotted, value in extra.items():
        section, key = dotted.split(".")
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{key: value})})
    return cfg


def batch(x: torch.Tensor, y: torch.Tensor) -> dict:
    return {"clip": x, "target": y, "skipped": [], "index": torch.arange(len(y))}


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- NaN policies --------------------------------------------------------------------------------


def test_nan_stop_names_the_step(tmp_path: Path) -> None:
    data = Clips(16)
    t = Trainer(config(tmp_path), model=linear_model(), train_set=data)
    t.train_step(batch(data.x[:4], data.y[:4]))
    t.train_step(batch(data.x[4:8], data.y[4:8]))
    bad = data.x[8:12].clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at epoch 0, batch 2, optimizer step 2; stopping \(no checkpoint"
    ):
        t.train_step(batch(bad, data.y[8:12]))


def test_nan_skip_skips_and_counts(tmp_path: Path) -> None:
    data = Clips(16)
    model = linear_model()
    skip = Trainer(
        config(tmp_path / "skip", **{"train.nan_policy": "skip"}), model=copy.deepcopy(model), train_set=data
    )
    clean = Trainer(config(tmp_path / "clean"), model=copy.deepcopy(model), train_set=data)
    bad = data.x[4:8].clone()
    bad[1] = float("inf")
    assert skip.train_step(batch(data.x[:4], data.y[:4])) is not None
    assert skip.train_step(batch(bad, data.y[4:8])) is None
    skip.train_step(batch(data.x[8:12], data.y[8:12]))
    clean.train_step(batch(data.x[:4], data.y[:4]))
    clean.train_step(batch(data.x[8:12], data.y[8:12]))
    assert skip.state.nonfinite_skipped == 1 and skip.state.step == 2 and skip.state.batch == 3
    a, b = params(skip.model), params(clean.model)
    assert all(torch.equal(a[k], b[k]) for k in a), "the skipped batch changed the weights"


class SlowClips(Clips):
    """Clips that take 30 ms each to load: a loader slower than the model."""

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        time.sleep(0.03)
        return super().__getitem__(key)


def test_an_epoch_reports_the_share_of_its_time_spent_waiting_for_input(tmp_path: Path) -> None:
    """input_wait_share (metrics.csv, the epoch line): near 1 when loading is the limit, near 0 when not."""
    slow = Trainer(config(tmp_path / "slow"), model=linear_model(), train_set=SlowClips(16)).train_epoch()
    fast = Trainer(config(tmp_path / "fast"), model=linear_model(), train_set=Clips(16)).train_epoch()
    assert slow["input_wait_share"] > 0.8 and 0 <= fast["input_wait_share"] < slow["input_wait_share"]
    assert f"input wait {slow['input_wait_share']:.0%}" in epoch_line(slow)


# ---- gradient accumulation -----------------------------------------------------------------------


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_accumulating_k_micro_batches_equals_one_k_times_larger_batch(tmp_path: Path, optim: str) -> None:
    data, k = Clips(24), 3
    model = linear_model()
    micro = Trainer(config(tmp_path / "micro", **{"train.batch_size": 2, "train.grad_accum": k, "optim.name": optim}),
                    model=copy.deepcopy(model), train_set=data)  # fmt: skip
    big = Trainer(config(tmp_path / "big", **{"train.batch_size": 2 * k, "optim.name": optim}),
                  model=copy.deepcopy(model), train_set=data)  # fmt: skip
    assert micro.optimizer.param_groups[0]["initial_lr"] == big.optimizer.param_groups[0]["initial_lr"]
    for step in range(2):  # two optimizer steps: momentum / Adam moments take part
        lo = step * 2 * k
        for i in range(k):
            micro.train_step(batch(data.x[lo + 2 * i : lo + 2 * i + 2], data.y[lo + 2 * i : lo + 2 * i + 2]))
            assert micro.state.step == step + (i == k - 1)
        big.train_step(batch(data.x[lo : lo + 2 * k], data.y[lo : lo + 2 * k]))
    assert big.state.step == 2
    a, b = params(micro.model), params(big.model)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(a["1.weight"], params(model)["1.weight"])


def test_adamw_has_betas_and_no_decay_on_biases(tmp_path: Path) -> None:
    t = Trainer(config(tmp_path, **{"optim.name": "adamw", "optim.betas": [0.8, 0.99], "train.batch_size": 8}),
                model=linear_model(), train_set=Clips(16))  # fmt: skip
    assert isinstance(t.optimizer, torch.optim.AdamW)
    decay, no_decay = t.optimizer.param_groups
    assert decay["betas"] == (0.8, 0.99) and decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert [p.ndim for p in no_decay["params"]] == [1]
    assert decay["initial_lr"] == pytest.approx(0.1 * 8 / 4)  # lr at base_batch, scaled with the batch


# ---- the resume position -------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_state_dict_round_trip_continues_at_the_same_position(tmp_path: Path) -> None:
    data, model = Clips(24), linear_model()
    cfg = config(tmp_path / "run", **{"train.ckpt_every_steps": 1})
    whole = Trainer(config(tmp_path / "whole"), model=copy.deepcopy(model), train_set=data).fit()

    first = Trainer(cfg, model=copy.deepcopy(model), train_set=data)
    save = first.save

    def save_then_die() -> None:
        save()
        if first.state.step == 8:  # 6 batches per epoch: epoch 1, batch 2
            raise Interrupted

    first.save = save_then_die
    with pytest.raises(Interrupted):
        first.fit()
    state = first.state_dict()
    assert (state["train_state"]["epoch"], state["train_state"]["batch"], state["train_state"]["step"]) == (1, 2, 8)

    second = Trainer(cfg, model=copy.deepcopy(model), train_set=data)
    second.load_state_dict(copy.deepcopy(state))
    assert (second.state.epoch, second.state.batch, second.state.step) == (1, 2, 8)
    assert second.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]
    assert TrainState.from_dict(second.state.to_dict()) == second.state
    resumed = second.fit(overwrite=True)  # continues in memory: the folder holds the interrupted run
    # and the same through the checkpoint file (`--resume`)
    from_file = Trainer(cfg, model=copy.deepcopy(model), train_set=data).fit(resume=True)
    for result in (resumed, from_file):
        assert result.steps == whole.steps == 18
        assert result.history[-1]["epoch"] == 3 and len(result.history) == 3
        assert result.history[-1]["lr"] == whole.history[-1]["lr"]
        a, b = params(whole.model), params(result.model)
        assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"


def test_old_checkpoint_state_keys_are_read() -> None:
    state = TrainState.from_dict(
        {"epoch": 2, "batch_in_epoch": 5, "step": 17, "scheduler": {}, "history": [], "lrs": []}
    )
    assert (state.epoch, state.batch, state.step) == (2, 5, 17)


# ---- time budgets --------------------------------------------------------------------------------


def test_budgeted_run_ends_at_the_minimum_lr_then_evaluates(tmp_path: Path, capsys) -> None:
    cfg = config(tmp_path, **{"train.max_minutes": 0.05, "train.epochs": 100_000, "optim.min_lr_factor": 0.1,
                              "optim.warmup_epochs": 10_000, "train.batch_size": 8})  # fmt: skip
    trainer = Trainer(cfg, model=linear_model(), train_set=Clips(128), val_set=Clips(16, train=False, seed=1))
    result = trainer.fit()
    peak, lrs = 0.1 * 8 / 4, trainer.state.lrs  # lr at base_batch 4, scaled to batch 8
    assert 3.0 <= result.train_time_s < 3.0 + 2.0 and result.history[-1]["epoch"] < 100_000
    assert len(lrs) == result.steps > 10
    # the last step ends at min_lr_factor * lr: its lr is set a step's time before the budget ends, where the
    # cosine is flat (1 - cos is quadratic in the time left), so it is min_lr within a part in a million
    assert lrs[-1] == pytest.approx(0.1 * peak, rel=1e-6), lrs[-5:]
    # the warm-up (10,000 epochs' worth of steps) was capped at 10% of the budget: the lr came near its
    # peak (the cosine under it has spent 10% of the budget by then: 0.1 + 0.9 * 0.976 of it)
    assert 0.95 * peak < max(lrs) <= peak
    assert set(result.metrics) >= {"top1", "top5"}  # then evaluated
    assert json.loads((tmp_path / "summary.json").read_text())["train_time_s"] == result.train_time_s
    printed = capsys.readouterr().out
    assert "epoch 1 | loss" in printed and "/0.1 min" in printed
    assert "warning" not in printed and "budget_warning" not in json.loads((tmp_path / "summary.json").read_text())


def test_a_budget_that_buys_the_expected_steps_says_nothing(tmp_path: Path, capsys) -> None:
    cfg = config(tmp_path, **{"train.max_minutes": 0.02, "train.epochs": 100_000, "train.expected_steps": 10})
    result = Trainer(cfg, model=linear_model(), train_set=Clips(64), val_set=Clips(8, train=False, seed=1)).fit()
    warning = json.loads((tmp_path / "summary.json").read_text()).get("budget_warning")
    assert result.steps < 5 or (warning is None and "warning" not in capsys.readouterr().out)


def test_the_budget_warning_fits_the_run_its_data_and_fine_tunes(tmp_path: Path) -> None:
    """A busy or slower machine is told how many minutes would buy the expected steps; the steps are
    capped at 32 epochs of the run's own data (a 64-clip set is not sent to hundreds of epochs), and a
    fine-tune from the user's checkpoint (model.init_from) is not held to a from-scratch figure."""
    cfg = config(tmp_path, **{"train.max_minutes": 1.0, "train.expected_steps": 1000})
    trainer = Trainer(cfg, model=linear_model(), train_set=Clips(64))  # 16 steps per epoch: at most 512 expected
    s = trainer.state
    s.elapsed_s, s.step, s.clips_seen = 60.0, 100, 400
    warning = trainer._budget_warning()
    assert warning.startswith("the 1-minute budget ended after 100 optimizer steps (6.7 clips/s), 20% of the 512")
    assert "this run expects (train.expected_steps for this budget, at most 32 epochs of this data)" in warning
    assert warning.endswith("For about 512 steps at this speed: train.max_minutes=6")
    s.step = 256  # half of the capped figure: no warning (it would be one against the uncapped 1000)
    assert trainer._budget_warning() is None
    s.step, s.elapsed_s = 100, 59.0  # the budget did not end the run (epochs did)
    assert trainer._budget_warning() is None
    s.elapsed_s = 60.0
    trainer.cfg.model.init_from = str(tmp_path / "pretrained.safetensors")
    assert trainer._budget_warning() is None
    trainer.cfg.model.init_from = "motion_prior_xs"  # a shipped prior is the config's own start: still held to it
    assert trainer._budget_warning() is not None
    trainer.cfg.train.expected_steps_minutes = 5.0  # 1000 steps are what 5 minutes buy: 1 minute expects 200
    s.step = 90
    assert "45% of the 200" in trainer._budget_warning()
    s.step = 100
    assert trainer._budget_warning() is None


def test_resume_continues_a_budgeted_schedule_from_the_saved_training_time(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"train.max_minutes": 1.0, "optim.warmup_epochs": 0, "optim.min_lr_factor": 0.0})
    first = Trainer(cfg, model=linear_model(), train_set=Clips(16))
    peak = first.optimizer.param_groups[0]["initial_lr"]
    assert first.optimizer.param_groups[0]["lr"] == pytest.approx(peak)
    state = first.state_dict()
    state["train_state"] |= {"step": 3, "elapsed_s": 30.0}  # half the budget spent
    second = Trainer(cfg, model=linear_model(), train_set=Clips(16))
    second.load_state_dict(state)
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * peak)  # cosine at its midpoint
    assert not second.done
    second.state.elapsed_s = 60.0
    assert second.done


def test_zero_training_steps_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train.epochs must be an integer >= 1, got 0"):  # in the config itself
        Trainer(config(tmp_path, **{"train.epochs": 0}), model=linear_model(), train_set=Clips(16))
    with pytest.raises(ValueError, match=r"zero steps.*0 training clips"):
        Trainer(config(tmp_path), model=linear_model(), train_set=Clips(0))
    with pytest.raises(ValueError, match="zero steps"):  # 2 batches never fill an accumulation of 3
        Trainer(config(tmp_path, **{"train.grad_accum": 3}), model=linear_model(), train_set=Clips(8))


# ---- config enums --------------------------------------------------------------------------------


def test_invalid_enum_values_are_rejected_by_key_and_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"train\.amp: Invalid value 'fp32', expected one of \[auto, off, bf16, fp16\]"
    ):
        load_config(None, ["train.amp=fp32"])
    with pytest.raises(ValueError, match=r"optim\.name: .*'adam'.*\[sgd, adamw\]"):
        load_config(None, ["optim.name=adam"])
    with pytest.raises(ValueError, match=r"train\.nan_policy: .*\[stop, skip\]"):
        load_config(None, ["train.nan_policy=ignore"])
    yaml = tmp_path / "c.yaml"
    yaml.write_text("train:\n  channels_last: off\n  amp: off\n")  # YAML 1.1 reads these as booleans
    cfg = load_config(yaml, ["train.nan_policy=skip"])
    assert (cfg.train.channels_last, cfg.train.amp, cfg.train.nan_policy) == ("off", "off", "skip")


def test_load_config_returns_typed_sections_that_round_trip_through_yaml(tmp_path: Path) -> None:
    from sevnet.data import CacheMode, DataFormat, Sampling
    from sevnet.engine.config import to_yaml

    cfg = load_config(None, ["data.format=folder", "data.sampling=dense", "model.overrides={}", "train.amp=bf16"])
    assert isinstance(cfg, ExperimentConfig) and isinstance(cfg.train, TrainConfig)
    assert (cfg.data.format, cfg.data.sampling, cfg.data.cache) == (DataFormat.folder, Sampling.dense, CacheMode.off)
    assert cfg.data.frame_template == "sorted"  # resolved where it is validated, in DataConfig
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    assert load_config(tmp_path / "config.yaml") == cfg
    assert replace(cfg, train=replace(cfg.train, epochs=2)).train.epochs == 2 and cfg.train.epochs == 64


def test_one_weights_digest_for_the_run_summary_its_checkpoint_and_exports(tmp_path: Path) -> None:
    from sevnet.engine.checkpoint import read_checkpoint, weights_digest

    result = Trainer(config(tmp_path, **{"train.epochs": 1}), model=linear_model(), train_set=Clips(8)).fit()
    summary = json.loads((tmp_path / "summary.json").read_text())
    from_file = weights_digest(read_checkpoint(result.checkpoint)[0])  # what an export's sidecar records
    assert summary["weights_digest_per_rank"] == [from_file] == [weights_digest(result.model)]


# ---- evaluation failures and progress lines ------------------------------------------------------


def test_failed_evaluation_keeps_the_epoch_and_is_recorded(tmp_path: Path, capsys) -> None:
    cfg = config(tmp_path, **{"train.epochs": 2})
    result = Trainer(cfg, model=linear_model(), train_set=Clips(16), val_set=Clips(8, train=False, fail=True)).fit()
    assert result.steps == 8 and result.metrics == {}
    assert [e["epoch"] for e in result.eval_errors] == [1, 2]
    assert "validation disk went away" in result.eval_errors[0]["error"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["eval_errors"] == result.eval_errors and summary["steps"] == 8
    assert (tmp_path / "checkpoints" / "model.safetensors").is_file()
    out, err = capsys.readouterr()
    assert "evaluation after epoch 1 failed" in err
    assert "epoch 1 | loss" in out and "epoch 2 | loss" in out  # per-epoch lines without the progress bar


# ---- fine-tuning: model.init_from ----------------------------------------------------------------

TINY = {"stages": [[16, 8, 1], [32, 16, 1], [32, 16, 1], [64, 32, 1]], "head_channels": 64}


def _tiny_sevnet(num_classes: int) -> nn.Module:
    return create_model("sevnet_xs", num_classes=num_classes, dropout=0.0,
                        stages=[[16, 8, 1], [32, 16, 1], [32, 16, 1], [64, 32, 1]], head_channels=64)  # fmt: skip


def test_init_from_another_class_count_loads_the_backbone_only(tmp_path: Path, capsys) -> None:
    torch.manual_seed(123)
    source = _tiny_sevnet(5)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.5)  # unlike any fresh initialisation
    ckpt = tmp_path / "source.safetensors"
    save_checkpoint(ckpt, source, {"model": "sevnet_xs", "num_classes": 5, "class_names": list("abcde")})
    cfg = config(tmp_path / "run", **{"model.name": "sevnet_xs", "model.overrides": TINY, "model.dropout": 0.0,
                                      "model.init_from": str(ckpt)})  # fmt: skip
    model = Trainer(cfg, train_set=Clips(8)).model
    src, new = params(source), params(model)
    assert new["fc.weight"].shape == (2, 64) and not torch.equal(new["fc.bias"], src["fc.bias"][:2])
    backbone = [k for k in new if not k.startswith("fc.")]
    assert len(backbone) > 20 and all(torch.equal(new[k], src[k]) for k in backbone)
    printed = capsys.readouterr().out
    assert f"loaded {len(backbone)} of {len(new)} tensors" in printed
    assert "re-initialised 2 (classifier: 5 classes -> 2): fc.weight, fc.bias" in printed


def test_init_from_same_count_other_names_and_plain_state_dicts(tmp_path: Path) -> None:
    source = _tiny_sevnet(2)
    ckpt = tmp_path / "named.safetensors"
    save_checkpoint(ckpt, source, {"model": "sevnet_xs", "num_classes": 2, "class_names": ["x", "y"]})
    target = _tiny_sevnet(2)
    report = init_from_checkpoint(target, ckpt, ["class 0", "class 1"])
    assert set(report.reinitialised) == {"fc.weight", "fc.bias"} and "class names differ" in report.summary()
    same = init_from_checkpoint(_tiny_sevnet(2), ckpt, ["x", "y"])
    assert not same.reinitialised and not same.missing and not same.dropped
    # plain safetensors state dicts, with or without a "model." prefix (and a compile wrapper's)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    for name, keys in (("plain", state), ("prefixed", {f"model._orig_mod.{k}": v for k, v in state.items()})):
        path = tmp_path / f"{name}.safetensors"
        save_file(keys, str(path))
        model = _tiny_sevnet(3)
        report = init_from_checkpoint(model, path, ["a", "b", "c"])
        assert set(report.reinitialised) == {"fc.weight", "fc.bias"}, name
        assert len(report.loaded) == len(state) - 2 and not report.dropped, name
        first = next(iter(state))
        assert torch.equal(model.state_dict()[first], state[first]), name


def test_init_from_refuses_pickles(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight": 1}))
    with pytest.raises(CheckpointError, match="pickled"):
        init_from_checkpoint(_tiny_sevnet(2), evil, ["a", "b"])


# ---- torch.compile-wrapped models ----------------------------------------------------------------


def test_resume_with_compile_uses_unwrapped_keys(tmp_path: Path, monkeypatch) -> None:
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend="eager"))  # no C++ toolchain needed
    data = Clips(16)
    first = Trainer(
        config(tmp_path, **{"train.compile": True, "train.epochs": 1}), model=linear_model(), train_set=data
    )
    assert type(first.model).__name__ == "OptimizedModule"
    first.fit()
    keys = load_file(str(tmp_path / "checkpoints" / "last.safetensors"))
    assert "model.1.weight" in keys and not any("_orig_mod" in k for k in keys)
    again = Trainer(
        config(tmp_path, **{"train.compile": True, "train.epochs": 2}), model=linear_model(), train_set=data
    )
    result = again.fit(resume=True, allow_changed=["train.epochs"])
    assert result.steps == 8 and type(result.model).__name__ == "Sequential"


def test_channels_last_auto_follows_the_measured_rule() -> None:
    """auto: channels-last on CUDA and on a CPU with 2+ threads (benchmarks/train_layout.py), NCDHW on one thread."""
    from sevnet.engine.config import ChannelsLast
    from sevnet.engine.trainer import use_channels_last

    threads = torch.get_num_threads()
    try:
        cpu = torch.device("cpu")
        torch.set_num_threads(1)
        assert not use_channels_last(ChannelsLast.auto, cpu)
        assert use_channels_last(ChannelsLast.on, cpu)
        torch.set_num_threads(2)
        assert use_channels_last(ChannelsLast.auto, cpu)
        assert not use_channels_last(ChannelsLast.off, cpu)
        assert use_channels_last(ChannelsLast.auto, torch.device("cuda"))
    finally:
        torch.set_num_threads(threads)


def test_amp_auto_is_bf16_on_a_cpu_with_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: bf16 on a CPU with AMX (1.30-1.62x the clips/s, benchmarks/train_layout.py), float32 without."""
    from sevnet.engine import trainer
    from sevnet.engine.config import AmpMode

    cpu = torch.device("cpu")
    for amx, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(trainer, "cpu_has_amx", lambda amx=amx: amx)
        assert trainer.amp_dtype(AmpMode.auto, cpu) == expected
        assert trainer.amp_dtype(AmpMode.off, cpu) is None
        assert trainer.amp_dtype(AmpMode.bf16, cpu) == torch.bfloat16


def test_bf16_training_on_the_cpu_learns_and_saves_float32(
    motion_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from conftest import tiny_config_overrides

    from sevnet.engine import load_config, load_model, train

    cfg = load_config(None, tiny_config_overrides(motion_dataset, tmp_path / "run", **{"train.amp": "bf16"}))
    result = train(cfg)
    out = capsys.readouterr().out  # the resolved speed flags are printed once
    assert re.search(r"training on cpu, \d+ threads: bfloat16 autocast, (channels-last|NCDHW), 1 process", out), out
    losses = [row["train_loss"] for row in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "model.safetensors")
    assert {p.dtype for p in model.parameters()} == {torch.float32}

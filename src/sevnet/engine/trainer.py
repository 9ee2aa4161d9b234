"""The training loop: the paper's from-scratch recipe, one process or many (torchrun/DDP).

``Trainer`` builds everything in ``__init__``; ``fit`` runs epochs (``train_epoch``, which calls
``train_step`` per batch), saves a checkpoint after each epoch *before* evaluating (so a failing
evaluation cannot lose the epoch), evaluates when due, and writes the final checkpoint. Where the
run stands is one ``TrainState`` (``state_dict`` / ``load_state_dict``); checkpoints (atomic, no
pickle) hold it, so ``resume`` continues mid-epoch: the sampler skips the batches already seen
and the RNG state is restored, and a resumed CPU run in deterministic mode is bit-identical.

Recipe: SGD + momentum or AdamW, lr scaled linearly with the global batch, linear warm-up then
cosine decay per step, over the epochs or, with ``train.max_minutes``, over a training-time budget.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sevnet.data import DataConfig, SkipCounter, build_dataset, build_loader, normalize_clips
from sevnet.data.cache import with_run_cache_dir
from sevnet.data.config import Flip, Reverse
from sevnet.data.datasets import AUTO_REPEATS, AUTO_REPEATS_MAX_VIDEOS_PER_CLASS
from sevnet.data.folder import freeze_split
from sevnet.data.mirror import describe as describe_flip
from sevnet.data.mirror import vertical_suggestion
from sevnet.data.reversal import describe as describe_reversal
from sevnet.data.reversal import suggestion as reversal_suggestion
from sevnet.device import describe as describe_device
from sevnet.errors import ConfigError, SevnetError
from sevnet.models import create_model
from sevnet.models.sevnet import recorded_defaults
from sevnet.progress import log_to, progress_bar, say

from .both_ways import both_ways_partners
from .card import Clip, ModelCard, Preprocessing, Provenance
from .checkpoint import (
    check_resume_config,
    load_training_state,
    read_recorded_config,
    save_checkpoint,
    unwrap_model,
    weights_digest,
)
from .config import AmpMode, ChannelsLast, ExperimentConfig, NanPolicy, TrainConfig, to_container, to_yaml
from .distributed import DistInfo, all_reduce_sum, barrier, gather_objects, init_distributed
from .evaluate import compute_metrics, predict_loader
from .finetune import classifier_parameters, init_from_checkpoint, pretrained_names
from .mixing import AUTO_STILLMIX_MAX_VIDEOS_PER_CLASS, STILLMIX_HINT, ClipMixer, StillMixer, auto_stillmix_prob
from .optim import LRSchedule, build_optimizer, lr_factor
from .protocols import TracedDataset, TrainingDataset, Uint8ClipDataset
from .rundir import (
    StopSignals,
    TrainingStopped,
    check_new_run,
    check_writable,
    refuse_existing_run,
    remove_stale_temps,
    run_lock,
    write_text_atomically,
)
from .runlog import RunLog, budget_text, epoch_line, write_skipped_csv
from .state import TrainResult, TrainState

__all__ = ["NonFiniteLossError", "TrainResult", "TrainState", "Trainer", "WorkerCrashError", "lr_factor", "train"]


EXPECTED_EPOCHS_CAP = 32  # train.expected_steps counts at most this many epochs of the run's own data


class NonFiniteLossError(SevnetError, RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class OutOfMemoryError(SevnetError, RuntimeError):
    """The GPU ran out of memory in a training step; the message names the batch and what to lower."""


class WorkerCrashError(SevnetError, RuntimeError):
    """A data-loading worker died (e.g. the decoder crashed); the message names what it was loading."""


def train(
    cfg: ExperimentConfig, resume: bool = False, overwrite: bool = False, allow_changed: Sequence[str] = ()
) -> TrainResult:
    """Train as ``cfg`` says (continuing ``<out_dir>/checkpoints/last.safetensors`` if ``resume``, with the
    run's config but for the keys in ``allow_changed``; replacing a run already in ``train.out_dir`` if
    ``overwrite``, else refusing it)."""
    out_dir = check_writable(cfg.train.out_dir, "train.out_dir")  # a read-only folder: named before any work
    if resume:  # before any data is read or cached: a changed config is refused in milliseconds
        last = out_dir / "checkpoints" / "last.safetensors"
        check_resume_config(last, read_recorded_config(last), to_container(cfg), allow_changed)
    elif not overwrite:
        refuse_existing_run(out_dir)  # before any work (a split drawn, a frame cache built)
    main = int(os.environ.get("RANK", "0")) == 0
    # The lock first: a fresh run empties train.log, which a run still going in the folder would own.
    with run_lock(out_dir, main), log_to(out_dir / "train.log" if main else None, fresh=not resume):
        return Trainer(cfg).fit(resume=resume, overwrite=overwrite, allow_changed=allow_changed)


def host_copy(values: torch.Tensor) -> Callable[[], list[float]]:
    """Start copying a small tensor to the host and return the function that waits for it and reads
    it. On a GPU the copy is queued behind the forward, and the CPU goes on queueing the backward
    instead of idling until the GPU catches up (``.item()`` right after the forward would)."""
    if values.device.type != "cuda":
        return values.tolist
    host = values.to("cpu", non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def read() -> list[float]:
        copied.synchronize()
        return host.tolist()

    return read


@dataclass
class _EpochMeter:
    """Running loss / accuracy / throughput of the epoch in progress (this rank)."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0
    waited: float = 0.0  # seconds spent waiting for the loader's next batch
    started: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, correct: float, clips: int) -> None:
        self.loss_sum += loss * clips
        self.seen += clips
        self.correct += correct

    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    def top1(self) -> float:
        return self.correct / max(self.seen, 1)

    def seconds(self) -> float:
        return max(time.perf_counter() - self.started, 1e-6)


class Trainer:
    """One training run. ``model``/``train_set``/``val_set`` replace what ``cfg`` would build
    (tests use tiny in-memory ones); with ``train_set`` given, there is no validation set unless
    ``val_set`` is given too."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        model: nn.Module | None = None,
        train_set: TrainingDataset | None = None,
        val_set: TrainingDataset | None = None,
    ) -> None:
        self.cfg = cfg = copy.deepcopy(cfg)  # the caller's config is left as it was
        self.info = init_distributed(cfg.train.device)
        _seed_everything(cfg.train.seed, cfg.train.deterministic)
        self.out_dir = Path(cfg.train.out_dir)
        self.last_ckpt = self.out_dir / "checkpoints" / "last.safetensors"
        self.final_ckpt = self.out_dir / "checkpoints" / "model.safetensors"
        check_writable(self.out_dir, "train.out_dir")
        cfg.data = self._prepare_data_config(cfg.data)
        self._build_data(train_set, val_set)
        self._build_model(model)
        self._build_optimization()
        self.state = TrainState()
        self.log = RunLog(self.out_dir, False)  # fit opens the real one, once the run folder is checked
        self.skips = SkipCounter(cfg.data.max_skip_fraction, num_videos=len(self.train_set))
        self.meter = _EpochMeter()
        self._micro = 0  # micro-batches accumulated towards the next optimizer step
        self._clock: tuple[float, float] | None = None  # (perf_counter, elapsed_s) while an epoch runs

    # ---- setup ---------------------------------------------------------------------------------

    def _prepare_data_config(self, data_cfg: DataConfig) -> DataConfig:
        """The data config this run uses and records in config.yaml (so eval and a rerun read the
        same data): a folder dataset's seeded split frozen to ``<out_dir>/split.csv`` (rank 0 writes
        it; a run folder with a checkpoint keeps its split), the disk cache under ``<out_dir>/cache``."""
        reuse = self.last_ckpt.is_file()
        if self.info.is_main:
            frozen = freeze_split(data_cfg, self.out_dir, reuse=reuse)
        barrier(self.info)
        if not self.info.is_main:
            frozen = freeze_split(data_cfg, self.out_dir, reuse=True)
        return with_run_cache_dir(frozen, self.out_dir)

    def _build_data(self, train_set: Any, val_set: Any) -> None:
        cfg, info = self.cfg, self.info
        if train_set is None:
            progress = None if cfg.train.progress else False  # the cache's build bar follows train.progress
            train_set, val_set = build_dataset(cfg.data, "train", True, progress), _maybe_val_dataset(cfg, progress)
        self.train_set, self.val_set = train_set, val_set
        # eval.both_ways: validation (and the checkpoint's users) score clips forwards and backwards
        self.both_ways = checkpoint_card(cfg, train_set).both_ways
        if isinstance(train_set, TracedDataset):
            train_set.trace_dir = self.out_dir / ".loading"
        # A VideoDataset ships uint8 clips; train_step normalises each batch on the device with the
        # dataset's own mean/std. Other datasets (synthetic, tests' in-memory ones) give float clips.
        self._clip_stats: tuple[list[float], list[float]] | None = None
        if isinstance(train_set, Uint8ClipDataset):
            train_set.uint8_clips = True
            self._clip_stats = (list(train_set.cfg.mean), list(train_set.cfg.std))
        pin = info.device.type == "cuda"
        self.loader = build_loader(train_set, cfg.train.batch_size, train=True, cfg_data=cfg.data,
                                   distributed=info.distributed, pin_memory=pin,
                                   epoch_size=cfg.train.epoch_clips)  # fmt: skip
        self.val_loader = None
        if val_set is not None:
            self.val_loader = build_loader(val_set, cfg.eval.batch_size, train=False, cfg_data=cfg.data,
                                           distributed=info.distributed, pin_memory=pin)  # fmt: skip
        if info.is_main:  # after build_loader, which may lower data.repeats: auto to fit the batch
            self._describe_augmentation(train_set)

    def _describe_augmentation(self, train_set: Any) -> None:
        """Log what the ``auto`` data settings chose from the class names and the video count, and what
        ``data.reverse: auto`` would do when it is off and the videos are few."""
        data = self.cfg.data
        classes = list(getattr(train_set, "classes", None) or [])
        per_class = len(train_set) / max(len(classes), 1)
        if data.flip == Flip.auto:
            mirror = getattr(train_set, "mirror", None)
            say(describe_flip(classes, mirror) if mirror else "flip: off (auto: the classes have no names)")
        if data.vflip == Flip.auto:
            upside_down = getattr(train_set, "vertical_mirror", None)
            off = "vflip: off (auto: the classes have no names, or a dataset format without it)"
            say(describe_flip(classes, upside_down, "vflip") if upside_down else off)
        elif classes and hasattr(train_set, "vertical_mirror") and (hint := vertical_suggestion(classes, per_class)):
            say(hint)  # few videos per class, classes named up / down, a format with data.vflip
        if data.repeats == "auto" and hasattr(train_set, "repeats"):
            clips = "1 clip" if train_set.repeats == 1 else f"{train_set.repeats} clips"
            say(f"data.repeats: auto -> {clips} per decoded video ({per_class:.0f} training videos per class; "
                f"auto takes {AUTO_REPEATS} with up to {AUTO_REPEATS_MAX_VIDEOS_PER_CLASS}, else 1)")  # fmt: skip
        if self.cfg.optim.stillmix_prob == "auto":
            prob = auto_stillmix_prob(len(train_set), len(classes))
            chosen = f"{prob:g} of the clips" if prob else "off"
            say(f"optim.stillmix_prob: auto -> {chosen} ({per_class:.0f} training videos per class; auto blends a "
                f"still frame of another clip into half of them with up to {AUTO_STILLMIX_MAX_VIDEOS_PER_CLASS}, "
                "else off)" + (STILLMIX_HINT if prob else ""))  # fmt: skip
        if data.reverse == Reverse.auto:
            reversal = getattr(train_set, "reversal", None)
            off = "reverse: off (auto: no class names, or a dataset format without it)"
            say(describe_reversal(classes, reversal) if reversal else off)
            if self.both_ways:
                say(
                    "eval.both_ways: auto -> validation scores each clip as it is and played backwards (the "
                    "backwards scores go to each class's partner); the checkpoint records it for eval and predict"
                )
        elif classes and hasattr(train_set, "reversal") and (hint := reversal_suggestion(classes, per_class)):
            say(hint)  # few videos per class, classes named in pairs, a format with data.reverse

    def _build_model(self, model: nn.Module | None) -> None:
        cfg, info = self.cfg, self.info
        if model is None:
            model = create_model(cfg.model.name, num_classes=self.train_set.num_classes, dropout=cfg.model.dropout,
                                 **cfg.model.overrides)  # fmt: skip
        if cfg.model.init_from:
            report = init_from_checkpoint(model, cfg.model.init_from, list(self.train_set.classes))
            if info.is_main:
                say(report.summary())
        self.card = checkpoint_card(cfg, self.train_set)
        self.meta = self.card.to_meta()
        self.channels_last = use_channels_last(cfg.train.channels_last, info.device)
        if info.device.type == "cuda" and not cfg.train.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed clip shapes: cuDNN times its conv3d algorithms once
        self.model = _prepare_model(model, cfg.train, info, self.channels_last)
        self.amp_dtype = amp_dtype(cfg.train.amp, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.amp_dtype == torch.float16)
        self.mixer = _mixer(cfg, len(self.train_set.classes), info.rank)
        self.still_mixer = _still_mixer(cfg, self.train_set, info.rank)
        self.criterion: nn.Module = (
            nn.BCEWithLogitsLoss()
            if self.train_set.multi_label
            else nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        )

    def _build_optimization(self) -> None:
        """Optimizer, step counts and the lr schedule; a run that would take no step is an error."""
        cfg = self.cfg
        self.accum = cfg.train.grad_accum
        if self.accum < 1 or cfg.train.max_minutes < 0:
            raise ConfigError("train.grad_accum must be >= 1 and train.max_minutes >= 0")
        head = classifier_parameters(unwrap_model(self.model), self.train_set.num_classes)
        global_batch = cfg.train.batch_size * self.info.world_size * self.accum
        self.optimizer = build_optimizer(self.model, cfg.optim, global_batch, head)
        self.batches_per_epoch = len(self.loader)
        steps_per_epoch = self.batches_per_epoch // self.accum
        self.total_steps = cfg.train.epochs * steps_per_epoch
        if cfg.train.max_steps:
            self.total_steps = min(self.total_steps, cfg.train.max_steps)
        if self.total_steps <= 0:
            raise ConfigError(
                f"this config trains for zero steps: {len(self.train_set)} training clips, batch "
                f"{cfg.train.batch_size} x {self.info.world_size} process(es) -> {self.batches_per_epoch} "
                f"batches per epoch, train.grad_accum={self.accum}, train.epochs={cfg.train.epochs}, "
                f"train.max_steps={cfg.train.max_steps}"
            )
        self.budget_s = cfg.train.max_minutes * 60
        self.schedule = LRSchedule(round(cfg.optim.warmup_epochs * steps_per_epoch), self.total_steps,
                                   cfg.optim.warmup_factor, cfg.optim.min_lr_factor, self.budget_s)  # fmt: skip
        self.schedule.apply(self.optimizer, 0, 0.0)

    # ---- the loop ------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Out of epochs, steps (``train.max_steps``) or training time (``train.max_minutes``)."""
        s = self.state
        out_of_time = self.budget_s > 0 and s.elapsed_s >= self.budget_s
        return s.epoch >= self.cfg.train.epochs or s.step >= self.total_steps or out_of_time

    def fit(self, resume: bool = False, overwrite: bool = False, allow_changed: Sequence[str] = ()) -> TrainResult:
        """Train to the end (from the last checkpoint if ``resume``); evaluate; save the model.

        The run folder is locked while this runs. Without ``resume``, a folder that already holds a
        run is refused unless ``overwrite``; ``resume`` on a finished run changes nothing."""
        with run_lock(self.out_dir, self.info.is_main), StopSignals(self.info.is_main) as self._signals:
            if resume and self.resume(allow_changed) and self._finished():
                return self._result()
            self._open_run(resume, overwrite)
            if self.info.is_main:
                say(self._setup_line())
                say(self._data_line())
            while not self.done:
                epoch = self.state.epoch
                self._stop_if_asked()
                row = self.train_epoch()
                self._stop_if_asked(row if self.state.epoch > epoch else None)
                self.state.history.append(row)
                self.save()  # before evaluating: an evaluation that fails cannot lose the epoch
                if self._evaluation_due() and self._timed_evaluation(row):
                    self.save()  # again, with the validation metrics in the history
                self.log.epoch(self.state.history)
                if self.info.is_main:
                    say(epoch_line(row, self.budget_s))
            return self.finish()

    def _stop_requested(self) -> bool:
        """A SIGTERM/SIGINT arrived (on any rank: the ranks agree, so all stop at the same step)."""
        signals = getattr(self, "_signals", None)
        asked = float(signals is not None and signals.received is not None)
        if self.info.distributed:
            asked = all_reduce_sum([asked], self.info)[0]
        return asked > 0

    def _stop_if_asked(self, whole_epoch_row: dict[str, Any] | None = None) -> None:
        """On a stop request (and a run not at its end): save the checkpoint (with the row of an epoch
        that just ended) and raise TrainingStopped, which says how to resume; the lock is released."""
        if self.done or not self._stop_requested():
            return
        if whole_epoch_row is not None:
            self.state.history.append(whole_epoch_row)
        self.save()
        s, received = self.state, self._signals.received
        raise TrainingStopped(
            f"stopped by {signal.Signals(received or signal.SIGTERM).name} at epoch {s.epoch + 1}, step {s.step}; "
            f"checkpoint saved to {self.last_ckpt}. Resume with: sevnet train {self.out_dir / 'config.yaml'} --resume",
            received or signal.SIGTERM,
            quiet=not self.info.is_main,
        )

    def _open_run(self, resume: bool, overwrite: bool) -> None:
        """Check the folder (a fresh run), then write config.yaml, drop stale checkpoint temps, open the log."""
        if self.info.is_main:
            if not resume:
                check_new_run(self.out_dir, overwrite)
            write_text_atomically(self.out_dir / "config.yaml", to_yaml(self.cfg))
            for path in remove_stale_temps(self.last_ckpt.parent):
                say(f"note: removed {path}, left by an interrupted checkpoint save", file=sys.stderr)
        barrier(self.info)
        self.log = RunLog(self.out_dir, self.info.is_main)

    def _finished(self) -> bool:
        """The resumed run had ended: out of epochs/steps/time and its model written. Says so."""
        s = self.state
        finished = self.done and self.final_ckpt.is_file()
        if finished and self.info.is_main:
            print(f"{self.out_dir}: the run is already finished (epoch {s.epoch}, step {s.step}); nothing to "
                  f"resume, nothing written. To train on, raise train.epochs (or the budget) and name it in "
                  f"--allow-changed, or train into another train.out_dir.")  # fmt: skip
        return finished

    def train_epoch(self) -> dict[str, Any]:
        """The rest of the current epoch (from ``state.batch``); returns its metrics.csv row."""
        s, cfg = self.state, self.cfg
        epoch, first = s.epoch, s.batch
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        self.loader.sampler.start = first * self.loader.batch_size  # videos (data.repeats: clips / repeats)
        self.meter, self._micro = _EpochMeter(), 0
        self.optimizer.zero_grad(set_to_none=True)
        self._clock = (time.perf_counter(), s.elapsed_s)
        bar = self._progress(epoch, first)
        with self._worker_errors(), self._memory_errors():
            for batch in self._timed(bar):
                before = s.step
                self.train_step(batch)
                if s.step == before:
                    continue
                self._show(bar)
                if cfg.train.ckpt_every_steps and s.step % cfg.train.ckpt_every_steps == 0:
                    self.save()
                if self.done or self._stop_requested():
                    break
        self._tick()
        self._clock = None
        if s.batch >= self.batches_per_epoch:
            s.epoch, s.batch = epoch + 1, 0
        m = self.meter
        return {"epoch": epoch + 1, "step": s.step, "train_loss": m.loss(),
                "train_top1": None if self.train_set.multi_label else m.top1(),
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_clips_per_s": m.seen * self.info.world_size / m.seconds(), "epoch_time_s": m.seconds(),
                "input_wait_share": m.waited / m.seconds(), "train_time_s": s.elapsed_s}  # fmt: skip

    def _timed(self, batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The batches, adding the time spent waiting for each to the epoch meter: the share of an epoch
        the model waited for its input (MMAction2's data_time), which says when decoding is the limit."""
        batches = iter(batches)
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            self.meter.waited += time.perf_counter() - asked
            if batch is None:
                return
            yield batch

    def train_step(self, batch: dict[str, Any]) -> float | None:
        """One micro-batch: forward, backward, finite check (its gradients dropped if the loss is not
        finite); every ``grad_accum``-th one also an optimizer step. Returns the loss, or None for a
        batch with no sample or a skipped one."""
        self.state.batch += 1
        if self._all_skipped(batch):
            return None
        clip = batch["clip"].to(self.info.device, non_blocking=True)
        target = batch["target"].to(self.info.device, non_blocking=True)
        # Before normalising (the float keeps the layout): training clips arrive channels-last already
        # (sevnet.data.transforms.stack_clips), so only NCDHW training converts them, on the device.
        clip = clip.contiguous(memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format)
        if self._clip_stats is not None:
            clip = normalize_clips(clip, *self._clip_stats)
        if self.still_mixer:
            clip = self.still_mixer(clip)
        mixed_clip, loss_target = self.mixer(clip, target) if self.mixer else (clip, target)
        last_micro = self._micro + 1 >= self.accum
        no_sync = self.info.distributed and not last_micro
        with self.model.no_sync() if no_sync else contextlib.nullcontext():
            with self._autocast():
                logits = self.model(mixed_clip)
                loss = self.criterion(logits.float(), loss_target)
            read_stats = host_copy(self._step_stats(loss, logits, target))
            self.scaler.scale(loss / self.accum).backward()  # queued before the stats are read: no GPU wait
        value, finite, correct = read_stats()
        if not self._loss_is_finite(value, finite):
            return None
        self.meter.add(value, correct, len(target))
        self.state.clips_seen += len(clip) * self.info.world_size
        self._micro += 1
        if last_micro:
            self._optimizer_step(value)
        return value

    def _optimizer_step(self, loss: float) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = 0
        s = self.state
        s.step += 1
        self._tick()
        lr = self.schedule.apply(self.optimizer, s.step, s.elapsed_s)
        s.lrs.append(lr)
        self.log.step(s.step, loss, lr, self.cfg.train.log_every)

    def _all_skipped(self, batch: dict[str, Any]) -> bool:
        """Count the samples that failed to load (all ranks); True when no rank has any clip."""
        empty = batch["clip"] is None
        new_bad = sorted({path for path, _ in batch["skipped"]} - self.skips.bad_files)
        n_empty, n_skipped, n_good, n_new_bad = all_reduce_sum(
            [
                float(empty),
                len(batch["skipped"]),
                0 if empty else batch.get("videos", len(batch["clip"])),
                len(new_bad),
            ],
            self.info,
        )
        if n_new_bad and self.info.distributed:  # every rank counts every rank's bad files: they stop together
            self.skips.bad_files.update(path for paths in gather_objects(new_bad, self.info) for path in paths)
        self.skips.add(0, batch["skipped"], total_loaded=int(n_good), total_skipped=int(n_skipped),
                       partial=batch.get("partial"))  # fmt: skip
        return bool(n_empty)

    def _step_stats(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(loss, 1 if it is finite, correct top-1) as one small tensor on the device: one copy to the
        host per step instead of a wait for each value."""
        finite = torch.isfinite(loss).float()
        if self.train_set.multi_label:
            correct = torch.zeros((), device=loss.device)
        else:
            correct = (logits.argmax(1) == target).sum().float()
        return torch.stack([loss.detach().float(), finite, correct])

    def _loss_is_finite(self, loss: float, finite: float) -> bool:
        """All ranks agree; a NaN/inf loss stops the run (naming the step) or, with
        ``train.nan_policy=skip``, drops this step's accumulated gradients (this micro-batch's backward
        included) and counts it."""
        (finite,) = all_reduce_sum([finite], self.info)
        if finite == self.info.world_size:
            return True
        s = self.state
        if self.cfg.train.nan_policy == NanPolicy.skip:
            s.nonfinite_skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            self._micro = 0
            return False
        good = f"last good checkpoint: {self.last_ckpt}" if self.last_ckpt.is_file() else "no checkpoint yet"
        raise NonFiniteLossError(
            f"loss is {loss} at epoch {s.epoch}, batch {s.batch - 1}, optimizer step {s.step}; stopping "
            f"({good}). Lower optim.lr, or set train.nan_policy=skip to skip such steps."
        )

    def _tick(self) -> None:
        """Advance ``state.elapsed_s`` (while an epoch runs). With a budget under DDP the ranks
        average their clocks, so that all stop at the same step with the same lr."""
        if self._clock is None:
            return
        started, base = self._clock
        elapsed = base + time.perf_counter() - started
        if self.budget_s and self.info.distributed:
            elapsed = all_reduce_sum([elapsed], self.info)[0] / self.info.world_size
        self.state.elapsed_s = elapsed

    # ---- evaluation ----------------------------------------------------------------------------

    def _evaluation_due(self) -> bool:
        every = self.cfg.eval.every_epochs
        return self.val_loader is not None and (self.done or bool(every and self.state.epoch % every == 0))

    def evaluate(self) -> dict[str, float]:
        """Validation metrics of the current weights on rank 0 ({} on the other ranks)."""
        multi = self.val_set.multi_label
        _, probs, targets, skipped = predict_loader(self.model, self.val_loader, multi, self.info, self._autocast,
                                                    self.both_ways)  # fmt: skip
        if not self.info.is_main:
            return {}
        metrics = compute_metrics(probs, targets, multi, skipped)
        metrics["skipped"] = len(skipped)
        return metrics

    def _timed_evaluation(self, row: dict[str, Any]) -> bool:
        """``_evaluate_epoch``, its seconds added to ``state.eval_s`` (kept out of the training budget)."""
        started = time.perf_counter()
        try:
            return self._evaluate_epoch(row)
        finally:
            self.state.eval_s += time.perf_counter() - started

    def _evaluate_epoch(self, row: dict[str, Any]) -> bool:
        """Evaluate into ``row`` and the state; a failure is reported and recorded, not raised."""
        s = self.state
        try:
            metrics = self.evaluate()
        except Exception as err:  # the epoch is saved; the run goes on and records the failure
            s.eval_errors.append({"epoch": row["epoch"], "error": f"{type(err).__name__}: {err}"})
            if self.info.is_main:
                say(f"warning: evaluation after epoch {row['epoch']} failed ({type(err).__name__}: {err}); "
                    f"the epoch's checkpoint is saved and training goes on", file=sys.stderr)  # fmt: skip
            return False
        s.metrics = metrics
        row |= {f"val_{k}": v for k, v in metrics.items() if k != "num_samples"}
        key = "mAP" if self.val_set.multi_label else "top1"
        if key in metrics and (s.best_metric is None or metrics[key] > s.best_metric):
            s.best_metric, s.best_epoch = metrics[key], row["epoch"]
        return True

    # ---- state and checkpoints -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume restores: weights, optimizer, grad scaler, TrainState, CPU RNG."""
        return {
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": self.state.to_dict(),
            "rng_cpu": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` (from ``state_dict``; model and optimizer optional) left off."""
        if "model" in state:
            unwrap_model(self.model).load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState.from_dict(state["train_state"])
        torch.set_rng_state(state["rng_cpu"])
        self.schedule.apply(self.optimizer, self.state.step, self.state.elapsed_s)

    def save(self, path: Path | None = None) -> None:
        """Checkpoint the run at its current position (rank 0 writes; all ranks wait)."""
        skips = self.skips.state(gather_objects((self.skips.skipped, self.skips.partial), self.info))
        if self.info.is_main:
            sd = self.state_dict()
            extra = {**sd["train_state"], "scaler": sd["scaler"], "rng_cpu": sd["rng_cpu"], "skips": skips}
            meta = self.card.trained(self.state.epoch, self.state.step).to_meta()
            save_checkpoint(path or self.last_ckpt, self.model, meta, self.optimizer, extra)
        barrier(self.info)

    def resume(self, allow_changed: Sequence[str] = ()) -> bool:
        """Continue from ``last.safetensors`` if there is one (its config must be this one, but for the
        keys a resume may change and those in ``allow_changed``); says where."""
        if not self.last_ckpt.is_file():
            if self.info.is_main:
                say(f"no checkpoint at {self.last_ckpt}; starting from scratch")
            return False
        recorded = read_recorded_config(self.last_ckpt)
        changes = check_resume_config(self.last_ckpt, recorded, self.card.provenance.config, allow_changed)
        if changes and self.info.is_main:
            say(f"note: resuming with changed config keys: {'; '.join(changes)}")
        plain, tensors = load_training_state(self.last_ckpt, self.model, self.optimizer, expect=self.meta)
        self.load_state_dict({"train_state": plain, "scaler": plain.get("scaler"), "rng_cpu": tensors["rng_cpu"]})
        self.skips.load_state(plain.get("skips"), self.info.rank, self.info.world_size)  # skipped.csv: whole run
        s = self.state
        if self.info.is_main:
            say(f"resumed from {self.last_ckpt}: epoch {s.epoch}, batch {s.batch}, step {s.step}")
        return True

    def finish(self) -> TrainResult:
        """Final checkpoint, curves and summary.json (rank 0); the result (every rank)."""
        s, info = self.state, self.info
        # Every rank's weights must be identical after DDP; a digest per rank makes that checkable.
        digests = gather_objects(weights_digest(self.model), info)
        named = gather_objects((self.skips.skipped, self.skips.partial), info)  # every rank's bad files
        if info.is_main:
            meta = self.card.trained(s.epoch, s.step, s.metrics).to_meta()
            save_checkpoint(self.final_ckpt, self.model, meta)
            self.log.close(s.history, s.lrs)
            summary = {"metrics": s.metrics, "steps": s.step, "train_time_s": s.elapsed_s, "eval_time_s": s.eval_s,
                       "best_metric": s.best_metric, "best_epoch": s.best_epoch, "eval_errors": s.eval_errors,
                       "skipped_samples": self.skips.num_skipped, "nonfinite_steps_skipped": s.nonfinite_skipped,
                       "world_size": info.world_size, "weights_digest_per_rank": digests,
                       "history": s.history}  # fmt: skip
            summary |= write_skipped_csv(self.out_dir / "skipped.csv", named)
            warning = self._budget_warning()
            if warning:
                summary["budget_warning"] = warning
                say(f"warning: {warning}")
            write_text_atomically(self.out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
            shutil.rmtree(self.out_dir / ".loading", ignore_errors=True)  # what workers were loading: a crash report
            say(f"{s.step} optimizer steps in {s.elapsed_s / 60:.1f} min of training"
                f"{' (the train.max_minutes budget)' if self.budget_s else ''}; validation took "
                f"{s.eval_s / 60:.1f} min more (outside the budget)")  # fmt: skip
            say(self._written_line())
        barrier(info)
        return self._result()

    def _budget_warning(self) -> str | None:
        """A wall-clock budget buys steps in proportion to the machine's speed: say when it bought far
        fewer than the config expects (``train.expected_steps``), e.g. on a busy or slower machine."""
        s, t = self.state, self.cfg.train
        measured_for = t.expected_steps_minutes * 60 or self.budget_s  # a 3-minute run expects half a 6-minute one
        expected = round(t.expected_steps * self.budget_s / measured_for) if self.budget_s else t.expected_steps
        # Sized to the data: the configs' figures are about 32 epochs of their ~700 clips, and a small set
        # gains nothing from hundreds of epochs. A fine-tune from the user's own checkpoint starts from trained
        # weights: not its figure (a shipped prior, the config's own starting point, is).
        expected = min(expected, EXPECTED_EPOCHS_CAP * max(self.batches_per_epoch // self.accum, 1))
        fine_tune = bool(self.cfg.model.init_from) and self.cfg.model.init_from not in pretrained_names()
        if fine_tune or not self.budget_s or s.elapsed_s < self.budget_s or s.step >= expected / 2:
            return None
        speed = s.clips_seen / max(s.elapsed_s, 1e-9)
        minutes = math.ceil(self.budget_s / 60 * expected / max(s.step, 1))
        return (f"the {self.budget_s / 60:g}-minute budget ended after {s.step} optimizer steps ({speed:.1f} clips/s), "
                f"{s.step / expected:.0%} of the {expected} this run expects (train.expected_steps for this budget, "
                f"at most {EXPECTED_EPOCHS_CAP} epochs of this data): accuracy "
                f"at a time budget depends on the speed (a busy or slower machine than the config was "
                f"measured on, or a slower model?). For about {expected} steps at this speed: "
                f"train.max_minutes={minutes}")  # fmt: skip

    def _result(self) -> TrainResult:
        s = self.state
        return TrainResult(
            model=unwrap_model(self.model), metrics=s.metrics, history=s.history, steps=s.step,
            checkpoint=self.final_ckpt, last_checkpoint=self.last_ckpt, out_dir=self.out_dir,
            train_time_s=s.elapsed_s, clips_seen=s.clips_seen, nonfinite_steps_skipped=s.nonfinite_skipped,
            skipped=self.skips.skipped, eval_errors=s.eval_errors, best_metric=s.best_metric, config=self.cfg,
        )  # fmt: skip

    # ---- small helpers -------------------------------------------------------------------------

    def _setup_line(self) -> str:
        """What the speed flags resolved to on this device (train.amp / channels_last: auto)."""
        where = describe_device(self.info.device)
        precision = f"{str(self.amp_dtype).removeprefix('torch.')} autocast" if self.amp_dtype else "float32"
        layout = "channels-last" if self.channels_last else "NCDHW"
        return f"training on {where}: {precision}, {layout}, {self.info.world_size} process(es)"

    def _data_line(self) -> str:
        """The run folder, the clips of each split and where a drawn split was saved."""
        val = f", {len(self.val_set)} validation" if self.val_set is not None else ", no validation set"
        classes = getattr(self.train_set, "num_classes", None)
        line = f"run folder {self.out_dir}: {len(self.train_set)} training clips{val}" + (
            f", {classes} classes" if classes else ""
        )
        split = self.cfg.data.split_file
        if split and Path(split).parent == self.out_dir.resolve():
            line += f"; the split drawn from {self.cfg.data.root} is saved in {split}"
        return line

    def _written_line(self) -> str:
        """What the run left in its folder, e.g. for the user to find the model and the curves."""
        names = ["checkpoints/model.safetensors", "checkpoints/last.safetensors", "config.yaml", "metrics.csv",
                 "summary.json", "training_curves.png", "tensorboard/", "skipped.csv", "split.csv",
                 "train.log"]  # fmt: skip
        present = [n for n in names if (self.out_dir / n.rstrip("/")).exists()]
        return f"wrote {self.out_dir}/: {', '.join(present)}"

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=self.amp_dtype)

    def _progress(self, epoch: int, first: int) -> Any:
        """A bar on a terminal; in a redirected log, a line per quarter of a long epoch (sevnet.progress)."""
        if not (self.info.is_main and self.cfg.train.progress):
            return self.loader
        return progress_bar(self.loader, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}", initial=first,
                            total=self.batches_per_epoch, unit="batch", leave=False, dynamic_ncols=True)  # fmt: skip

    def _show(self, bar: Any) -> None:
        if not (self.info.is_main and hasattr(bar, "set_postfix")):
            return
        m = self.meter
        shown = {"loss": f"{m.loss():.3f}", "acc": f"{m.top1():.3f}",
                 "clips_s": f"{m.seen * self.info.world_size / m.seconds():.1f}",
                 "lr": f"{self.optimizer.param_groups[0]['lr']:.2e}"}  # fmt: skip
        if self.budget_s:
            shown["budget"] = budget_text(self.state.elapsed_s, self.budget_s)
        bar.set_postfix(shown)

    @contextlib.contextmanager
    def _memory_errors(self) -> Iterator[None]:
        """A GPU out of memory becomes an OutOfMemoryError saying which batch ran and what to lower."""
        try:
            yield
        except torch.cuda.OutOfMemoryError as err:
            t, d = self.cfg.train, self.cfg.data
            smaller = max(1, t.batch_size // 2)
            raise OutOfMemoryError(
                f"{self.info.device} ran out of memory training {self.cfg.model.name} on batches of "
                f"{t.batch_size} clips of {d.num_frames}x{d.train_crop}x{d.train_crop} per process: lower "
                f"train.batch_size (train.batch_size={smaller} "
                f"train.grad_accum={t.grad_accum * t.batch_size // smaller} keeps the optimizer's batch), or "
                f"data.num_frames / data.train_crop; train.amp=bf16 and train.channels_last=on also use less "
                f"memory. Resume from the last checkpoint with --resume (name the changed keys in --allow-changed). "
                f"({str(err).splitlines()[0]})"
            ) from err

    @contextlib.contextmanager
    def _worker_errors(self) -> Iterator[None]:
        """A dead loader worker becomes a WorkerCrashError naming what each worker was loading."""
        try:
            yield
        except RuntimeError as err:
            if "DataLoader worker" in str(err):
                raise WorkerCrashError(_loading_report(self.out_dir / ".loading", err)) from err
            raise


def checkpoint_card(cfg: ExperimentConfig, dataset: TrainingDataset) -> ModelCard:
    """Everything needed to rebuild the model and preprocess like evaluation, from the file alone."""
    data = cfg.data.to_dict()  # resolved: e.g. synthetic clips' real crop size
    classes = list(getattr(dataset, "classes", None) or [])
    both_ways = both_ways_partners(cfg.eval.both_ways, cfg.data.reverse, classes, bool(dataset.multi_label))
    return ModelCard(
        model=cfg.model.name,
        model_options={**recorded_defaults(cfg.model.name), "dropout": cfg.model.dropout, **cfg.model.overrides},
        num_classes=dataset.num_classes,
        class_names=tuple(dataset.classes),
        multi_label=bool(dataset.multi_label),
        preprocessing=Preprocessing(mean=tuple(data["mean"]), std=tuple(data["std"])),
        clip=Clip(
            num_frames=data["num_frames"],
            crop=data["eval_crop"],
            scale=data["eval_scale"],
            sampling=data["sampling"],
            frame_stride=data["frame_stride"],
            frame_template=data["frame_template"],
        ),
        both_ways=both_ways and tuple(both_ways),
        provenance=Provenance(config=to_container(cfg)),
    )


def checkpoint_meta(cfg: ExperimentConfig, dataset: TrainingDataset) -> dict[str, Any]:
    """``checkpoint_card(cfg, dataset)`` as the metadata dict a checkpoint's header holds."""
    return checkpoint_card(cfg, dataset).to_meta()


def amp_dtype(mode: AmpMode, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CUDA where supported, else fp16; bf16 on a CPU with AMX (1.30-1.62x the training
    clips/s of float32 for every SEVNet size, benchmarks/train_layout.py), else float32 (without AMX,
    bf16 is emulated and slower)."""
    if mode == AmpMode.off:
        return None
    if mode == AmpMode.auto:
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_amx() else None
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == AmpMode.bf16 else torch.float16


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bf16 tiles (Intel Sapphire Rapids and later), read from /proc/cpuinfo:
    where oneDNN runs bf16 convolutions natively. False where the file does not exist (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def _mixer(cfg: ExperimentConfig, num_classes: int, rank: int) -> ClipMixer | None:
    """Mixup / CutMix when either alpha is set; each process draws its own ratios."""
    o = cfg.optim
    if o.mixup_alpha == 0 and o.cutmix_alpha == 0:
        return None
    return ClipMixer(o.mixup_alpha, o.cutmix_alpha, num_classes, seed=cfg.train.seed * 1000 + rank)


def _still_mixer(cfg: ExperimentConfig, train_set: Any, rank: int) -> StillMixer | None:
    """StillMix when ``optim.stillmix_prob`` is above 0, or ``auto`` and the videos per class are few."""
    prob = cfg.optim.stillmix_prob
    if prob == "auto":
        prob = auto_stillmix_prob(len(train_set), len(getattr(train_set, "classes", None) or []))
    return StillMixer(float(prob), seed=cfg.train.seed * 1000 + rank) if prob > 0 else None


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False


def _maybe_val_dataset(cfg: ExperimentConfig, progress: bool | None = None) -> Any:
    try:
        return build_dataset(cfg.data, cfg.eval.split, train=False, progress=progress)
    except FileNotFoundError as err:
        say(f"no validation set ({err}); training without evaluation")
        return None


def use_channels_last(setting: ChannelsLast, device: torch.device) -> bool:
    """``auto``: channels_last_3d on CUDA, and on a CPU training with 2 or more threads, where it measured
    1.14-1.52x the clips/s of NCDHW for every model tried; with one thread it was 0.84-0.87x at 112-160 px
    (benchmarks/train_layout.py, docs/training.md "Speed flags")."""
    if setting != ChannelsLast.auto:
        return setting == ChannelsLast.on
    return device.type == "cuda" or (device.type == "cpu" and torch.get_num_threads() >= 2)


def _prepare_model(model: nn.Module, cfg: TrainConfig, info: DistInfo, channels_last: bool) -> nn.Module:
    if cfg.sync_bn and info.distributed:
        if info.device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(info.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if cfg.compile:
        model = torch.compile(model)
    if info.distributed:
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


def _loading_report(trace_dir: Path, err: Exception) -> str:
    loading = []
    if trace_dir.is_dir():
        loading = [p.read_text().strip() for p in sorted(trace_dir.glob("worker-*.txt"))]
    what = "; ".join(loading) if loading else "unknown (no trace)"
    return f"a data-loading worker died ({err}); workers were loading: {what}"

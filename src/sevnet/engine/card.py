"""``ModelCard``: the typed, versioned form of a model's metadata, the one place that reads and writes it.

The metadata travels as a JSON dict in a checkpoint's header (``meta``, engine/checkpoint.py) and in an
exported model's sidecar (``<stem>.sevnet.json``, deploy/runtime.py). ``ModelCard.from_meta`` reads any
such dict (today's, and format 1's, whose architecture options it pins); ``to_meta`` writes the same
keys and values, so a file written now loads in an older sevnet and ``from_meta(m).to_meta() == m``.
Keys the card does not know are kept (``extra``, ``data_extra``) and keys a dict lacked stay absent
(``omitted``): reading is tolerant, checking is ``checkpoint.check_meta``'s job.

``version`` 2 is the layout every sevnet to date has written (checkpoint format 2) and is implied by a
dict without ``card_version``; a later layout writes ``card_version``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

CARD_VERSION = 2  # the metadata layout this sevnet writes (= checkpoint format 2; format 1 is read as 1)

# Today's keys, in the order they are written; anything else is ``extra``.
_TOP_KEYS = (
    "model",
    "model_overrides",
    "num_classes",
    "class_names",
    "multi_label",
    "data",
    "config",
    "epoch",
    "step",
    "metrics",
    "weights_digest",
    "source",
    "quantized",
    "streaming",
    "clip_seconds",
    "both_ways",
    "card_version",
)
_DATA_KEYS = ("num_frames", "sampling", "frame_stride", "eval_scale", "eval_crop", "mean", "std", "frame_template")
_PROVENANCE_KEYS = ("config", "epoch", "step", "metrics", "weights_digest", "source", "quantized")
_STREAMING_KEYS = ("window", "flat4d", "frame_size", "state")
_MAPPINGS = ("model_overrides", "data", "streaming", "config", "metrics")


def _seq(value: Any) -> Any:
    """A JSON list as a tuple (anything else, e.g. a damaged file's value, as it is)."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _plain(value: Any) -> Any:
    """``value`` as JSON writes it: tuples as lists, mappings copied."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Preprocessing:
    """How a clip is normalised before the model: ``(x / 255 - mean) / std`` per RGB channel, the input a
    float32 ``(N, 3, T, H, W)`` tensor (``input_layout`` / ``input_dtype``; not recorded while fixed)."""

    mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    std: tuple[float, ...] = (0.225, 0.225, 0.225)
    input_layout: str = "NCTHW"
    input_dtype: str = "float32"


@dataclass(frozen=True)
class Clip:
    """The clip a model was trained on: ``num_frames`` frames sampled by ``sampling`` (``frame_stride``
    apart when dense), the short side resized to ``scale`` then centre-cropped to ``crop``; frame
    folders read with ``frame_template``. ``seconds``: its duration, where recorded (``clip_seconds``)."""

    num_frames: int = 8
    crop: int = 112
    scale: int = 128
    sampling: str = "segment"
    frame_stride: int = 4
    frame_template: str = "{:05d}.jpg"
    seconds: float | None = None


@dataclass(frozen=True)
class StreamingLayout:
    """A streaming step model's boundary (the sidecar's ``streaming``): frames in, logits and state out."""

    window: int = 0
    flat4d: bool = False
    frame_size: tuple[int, int] = (0, 0)
    state: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # frames_input, logits_output, ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StreamingLayout:
        known = {k: _seq(d[k]) if k in ("frame_size", "state") else d[k] for k in _STREAMING_KEYS if k in d}
        return cls(**known, extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _STREAMING_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "flat4d": self.flat4d, "frame_size": list(self.frame_size),
                **_plain(self.extra), "state": _plain(self.state)}  # fmt: skip


@dataclass(frozen=True)
class Provenance:
    """Where the weights came from: the resolved experiment config, the training position and metrics,
    and for an exported model the checkpoint's weights digest, its path and any quantization."""

    config: dict[str, Any] | None = None
    epoch: int | None = None
    step: int | None = None
    metrics: dict[str, Any] | None = None
    weights_digest: str | None = None
    source: str | None = None
    quantized: str | None = None

    @property
    def config_digest(self) -> str | None:
        """SHA-256 of the recorded config as canonical JSON (equal digests: the same experiment)."""
        if self.config is None:
            return None
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelCard:
    """A model's metadata, typed. ``model_options``: the ``create_model`` keyword arguments
    (``model_overrides``); ``omitted``: the keys (``data.<key>`` for clip and preprocessing keys) the dict
    it was read from lacked, which ``to_meta`` leaves out again."""

    model: str = ""
    model_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    multi_label: bool = False
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    clip: Clip = field(default_factory=Clip)
    streaming: StreamingLayout | None = None
    both_ways: tuple[int | None, ...] | None = None  # each class's time-reversed partner: score clips both ways
    provenance: Provenance = field(default_factory=Provenance)
    version: int = CARD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    data_extra: dict[str, Any] = field(default_factory=dict)
    omitted: frozenset[str] = frozenset({"card_version"})

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], version: int = CARD_VERSION) -> ModelCard:
        """The card of a metadata dict. ``version``: the layout a dict without ``card_version`` has (1 for a
        format-1 checkpoint's: its SEVNet architecture options are pinned, and the card is of this version)."""
        if version == 1:
            from sevnet.models.compat import upgrade_v1_meta

            meta, version = upgrade_v1_meta(dict(meta)), CARD_VERSION
        meta = copy.deepcopy(dict(meta))
        # A known key holding null or the wrong kind of value is kept as it is (extra), read as absent.
        odd = {
            k
            for k in _TOP_KEYS
            if k in meta and (meta[k] is None or (k in _MAPPINGS and not isinstance(meta[k], Mapping)))
        }
        extra = {k: v for k, v in meta.items() if k not in _TOP_KEYS or k in odd}
        meta = {k: v for k, v in meta.items() if k not in extra}
        data = meta.get("data", {})
        omitted = {k for k in _TOP_KEYS if k not in meta and k not in (*_PROVENANCE_KEYS, "streaming", "both_ways")}
        omitted |= {f"data.{k}" for k in _DATA_KEYS if k not in data}
        names = _seq(meta.get("class_names", ()))
        return cls(
            model=meta.get("model", ""),
            model_options=meta.get("model_overrides", {}),
            num_classes=meta.get("num_classes", len(names) if isinstance(names, tuple) else 0),
            class_names=names,
            multi_label=meta.get("multi_label", False),
            preprocessing=Preprocessing(**{k: _seq(data[k]) for k in ("mean", "std") if k in data}),
            clip=_clip(data, meta),
            streaming=StreamingLayout.from_dict(meta["streaming"]) if "streaming" in meta else None,
            both_ways=_seq(meta["both_ways"]) if "both_ways" in meta else None,
            provenance=Provenance(**{k: meta[k] for k in _PROVENANCE_KEYS if k in meta}),
            version=meta.get("card_version", version),
            extra=extra,
            data_extra={k: v for k, v in data.items() if k not in _DATA_KEYS},
            omitted=frozenset(omitted),
        )

    def to_meta(self) -> dict[str, Any]:
        """The metadata dict: today's keys and values (a JSON object; tuples written as lists)."""
        meta: dict[str, Any] = {
            "model": self.model,
            "model_overrides": _plain(self.model_options),
            "num_classes": self.num_classes,
            "class_names": _plain(self.class_names),
            "multi_label": self.multi_label,
            "data": self.data_meta(),
        }
        meta |= {k: _plain(v) for k in _PROVENANCE_KEYS if (v := getattr(self.provenance, k)) is not None}
        if self.streaming is not None:
            meta["streaming"] = self.streaming.to_dict()
        if self.clip.seconds is not None:
            meta["clip_seconds"] = self.clip.seconds
        if self.both_ways is not None:
            meta["both_ways"] = _plain(self.both_ways)
        meta = {k: v for k, v in meta.items() if k not in self.omitted}
        if self.version != CARD_VERSION or "card_version" not in self.omitted:
            meta["card_version"] = self.version  # version 2 is implied by its absence (all files to date)
        return meta | _plain(self.extra)

    def data_meta(self) -> dict[str, Any]:
        """The recorded preprocessing (``meta["data"]``), what ``data.config.inference_config`` reads."""
        c, p = self.clip, self.preprocessing
        data = {"num_frames": c.num_frames, "sampling": c.sampling, "frame_stride": c.frame_stride,
                "eval_scale": c.scale, "eval_crop": c.crop, "mean": _plain(p.mean), "std": _plain(p.std),
                "frame_template": c.frame_template}  # fmt: skip
        return {k: v for k, v in data.items() if f"data.{k}" not in self.omitted} | _plain(self.data_extra)

    def lacks(self, *keys: str) -> bool:
        """Whether the dict this card was read from lacked any of ``keys`` (``data.<key>`` for data keys)."""
        return any(k in self.omitted for k in keys)

    def trained(self, epoch: int, step: int, metrics: dict[str, Any] | None = None) -> ModelCard:
        """This card at a training position (what a checkpoint records)."""
        prov = replace(self.provenance, epoch=epoch, step=step, metrics=metrics or self.provenance.metrics)
        return replace(self, provenance=prov)

    def exported(self, weights_digest: str, source: str) -> ModelCard:
        """This card for a model exported from the checkpoint ``source`` whose weights have ``weights_digest``."""
        return replace(self, provenance=replace(self.provenance, weights_digest=weights_digest, source=source))

    def quantized_as(self, how: str) -> ModelCard:
        """This card for a quantized copy of its model (``how``: e.g. int8 and the method)."""
        return replace(self, provenance=replace(self.provenance, quantized=how))

    def with_clip_seconds(self, seconds: float) -> ModelCard:
        """This card with the training clip's duration recorded (``clip_seconds``)."""
        return replace(self, clip=replace(self.clip, seconds=float(seconds)), omitted=self.omitted - {"clip_seconds"})


def _clip(data: Mapping[str, Any], meta: Mapping[str, Any]) -> Clip:
    """The clip spec of ``meta["data"]``; its duration from ``clip_seconds`` (top level, else in ``data``)."""
    names = {"num_frames": "num_frames", "eval_crop": "crop", "eval_scale": "scale", "sampling": "sampling",
             "frame_stride": "frame_stride", "frame_template": "frame_template"}  # fmt: skip
    seconds = meta.get("clip_seconds", data.get("clip_seconds"))
    return Clip(**{names[k]: data[k] for k in names if k in data}, seconds=seconds)


def as_card(meta: ModelCard | Mapping[str, Any]) -> ModelCard:
    """``meta`` as a card (a card is returned as it is)."""
    return meta if isinstance(meta, ModelCard) else ModelCard.from_meta(meta)

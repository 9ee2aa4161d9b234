"""``sevnet.load(path) -> Predictor``: one object for a checkpoint, an ONNX file or an OpenVINO model.

A Predictor knows its classes and the clip its model was trained on (``clip_spec``), and turns a
video file, a frame folder, frames already in memory (a ``(T, H, W, 3)`` uint8 array or a list of
``(H, W, 3)`` frames) or a list of those into top-k ``{"label", "score"}`` lists. Files are
decoded and sampled exactly as ``sevnet eval`` / ``sevnet predict`` do, and arrays are sampled
by the same rule (the array is treated as the whole video), so a clip in memory and the same
frames written to a file get the same answer up to compression.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sevnet.data.annotations import Annotation, Sample
from sevnet.data.config import inference_config
from sevnet.data.datasets import VideoDataset
from sevnet.data.transforms import build_transform, normalize_clips
from sevnet.data.video import DEFAULT_MAX_PIXELS, DecodeError
from sevnet.engine.both_ways import both_ways_scores
from sevnet.engine.card import ModelCard
from sevnet.engine.checkpoint import load_weights as _load
from sevnet.engine.checkpoint import read_checkpoint, unwrap_model
from sevnet.engine.metrics import class_scores
from sevnet.errors import InputError

from .clip_spec import ClipSpec
from .runtime import ModelFileError, Runner, TorchRunner, load_runner, torch_runner

if TYPE_CHECKING:
    from .timeline import Timeline

MODEL_SUFFIXES = {".safetensors": "torch", ".onnx": "onnx", ".xml": "openvino"}


def inference_dataset(
    paths: list[str | Path], meta: dict[str, Any], clips: int = 1, dataset_class: type[VideoDataset] = VideoDataset
) -> VideoDataset:
    """A dataset over arbitrary files with the checkpoint's evaluation preprocessing: each video is
    decoded and sampled exactly as in evaluation (``clips`` evenly spaced clips); one that cannot be
    read gives an item with an error naming the file."""
    card = ModelCard.from_meta(meta)
    data = card.data_meta()  # its frame_template too: frame folders are read as in training
    max_pixels = int(card.data_extra.get("max_pixels", DEFAULT_MAX_PIXELS))  # the sidecar or checkpoint may set its own
    cfg = inference_config(data, eval_clips=clips, max_pixels=max_pixels)
    no_label: int | list[int] = [] if card.multi_label else -1
    samples = [Sample(Path(p), no_label, frames=Path(p).is_dir()) for p in paths]
    return dataset_class(Annotation(samples, list(card.class_names), bool(card.multi_label)), cfg, False)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _as_frames(x: Any) -> np.ndarray | None:
    """A (T, H, W, 3) uint8 array from an array, a tensor or a list of (H, W, 3) frames; None for a path."""
    if isinstance(x, str | Path):
        return None
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    if isinstance(x, Sequence) and len(x) > 0 and all(isinstance(f, np.ndarray) and f.ndim == 3 for f in x):
        x = np.stack(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a video path or a (T, H, W, 3) uint8 array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise ValueError(f"frames must be a (T, H, W, 3) array with T >= 1, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB (0-255), got {x.dtype}")
    return x


class Predictor:
    """Top-k predictions from any backend with the model's own preprocessing and class names."""

    def __init__(self, runner: Runner, meta: dict[str, Any], backend: str = "torch", source: str | None = None):
        self.runner = runner
        self.meta = meta
        self.card = card = ModelCard.from_meta(meta)
        self.backend = backend
        self.source = source
        self.classes: list[str] = list(card.class_names)
        self.multi_label = bool(card.multi_label)
        self.clip_spec = ClipSpec.from_meta(card)
        self._datasets: dict[int, VideoDataset] = {1: inference_dataset([], meta, 1)}

    @classmethod
    def from_model(
        cls, model: nn.Module, meta: dict[str, Any], device: str = "cpu", precision: str = "auto"
    ) -> Predictor:
        """Wrap an in-memory model (any ``nn.Module`` mapping (N, 3, T, H, W) to (N, K) logits)."""
        return cls(torch_runner(model, device, precision), meta, "torch")

    @property
    def device(self) -> torch.device:
        """Where the model runs (exported models: the CPU)."""
        return self.runner.device if isinstance(self.runner, TorchRunner) else torch.device("cpu")

    @property
    def uint8_input(self) -> bool:
        """Whether clips travel as uint8 and are normalised where the model runs (a PyTorch model)."""
        return isinstance(self.runner, TorchRunner)

    def __repr__(self) -> str:
        s = self.clip_spec
        return (
            f"Predictor({self.card.model or '?'}, {len(self.classes)} classes, backend={self.backend}, "
            f"clip {s.num_frames}x{s.size}x{s.size} {s.sampling})"
        )

    def dataset(
        self, paths: list[str | Path], clips: int = 1, dataset_class: type[VideoDataset] = VideoDataset
    ) -> VideoDataset:
        """The files ``paths`` as this model's input: decoded and sampled as in its evaluation."""
        return inference_dataset(paths, self.meta, clips, dataset_class)

    def _dataset(self, clips: int) -> VideoDataset:
        """The (empty) dataset whose sampling and transform frames in memory go through."""
        if clips not in self._datasets:
            self._datasets[clips] = self.dataset([], clips)
        return self._datasets[clips]

    def preprocess(self, x: str | Path | np.ndarray, clips: int = 1) -> np.ndarray:
        """Float (clips, 3, T, size, size) input for a path or a (T, H, W, 3) uint8 array."""
        return self._clips(x, clips, uint8=False).numpy()

    def _clips(self, x: str | Path | np.ndarray, clips: int, uint8: bool) -> torch.Tensor:
        """(clips, 3, T, size, size): normalised float, or uint8 to be normalised where the model runs."""
        frames = _as_frames(x)
        if frames is None:
            dataset = self.dataset([x], clips)
            dataset.uint8_clips = uint8
            item = dataset[0]
            if "error" in item:
                raise DecodeError(item["error"][1])
            return item["clip"]
        dataset = self._dataset(clips)
        views = dataset.clip_indices(len(frames), np.random.default_rng(0))
        video = torch.from_numpy(frames)
        transform = build_transform(False, dataset.cfg, normalize=not uint8)
        return torch.cat([transform(video[idx]) for idx in views])

    def probabilities(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        """Softmax (sigmoid for multi-label) of the model's logits for (N, 3, T, H, W) clips: float,
        or uint8 (normalised with the model's mean/std where the model runs). A model whose card records
        ``both_ways`` scores each clip as it is and played backwards, as its validation did."""
        if self.card.both_ways:
            one_way = lambda c: torch.from_numpy(self._one_way(c))  # noqa: E731
            return both_ways_scores(one_way, torch.as_tensor(clips), self.card.both_ways).numpy()
        return self._one_way(clips)

    def _one_way(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(clips, torch.Tensor) and clips.dtype == torch.uint8:
            stats = (self.clip_spec.mean, self.clip_spec.std)
            if isinstance(self.runner, TorchRunner):
                logits = np.asarray(self.runner(clips, stats=stats), np.float64)
                return self._scores(logits)
            clips = normalize_clips(clips, *stats).numpy()
        elif isinstance(clips, torch.Tensor):
            clips = clips.numpy()
        return self._scores(np.asarray(self.runner(clips), np.float64))

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        if logits.shape[-1] != len(self.classes):
            raise ModelFileError(f"model outputs {logits.shape[-1]} classes but its metadata names {len(self.classes)}")
        if not np.isfinite(logits).all():  # never a "(nan%)" prediction: the model, not the video, is broken
            raise ModelFileError(
                f"{self.source or 'the model'}: its output holds NaN/inf (its weights or its input normalisation "
                f"are not finite, or its values overflow): no prediction is made"
            )
        return class_scores(logits, self.multi_label)

    def top(self, scores: np.ndarray, topk: int = 5) -> list[dict[str, Any]]:
        """``[{"label", "score"}, ...]``, best first, for one (K,) score vector."""
        order = np.argsort(-scores, kind="stable")[: min(_check_count("topk", topk), len(self.classes))]
        return [{"label": self.classes[j], "score": float(scores[j])} for j in order]

    def scores(self, x: Any, clips: int = 1, batch_size: int = 8) -> np.ndarray:
        """Class scores, averaged over ``clips`` evenly spaced clips: (K,) for one input, (N, K) for a list."""
        clips = _check_count("clips", clips)
        single = not isinstance(x, list | tuple) or _is_frame_list(x)
        items = [x] if single else list(x)
        if not items:
            return np.zeros((0, len(self.classes)))
        out = []
        for i in range(0, len(items), max(1, batch_size)):
            chunk = [self._clips(item, clips, self.uint8_input) for item in items[i : i + batch_size]]
            probs = self.probabilities(torch.cat(chunk))
            out.extend(probs[k * clips : (k + 1) * clips].mean(0) for k in range(len(chunk)))
        return out[0] if single else np.stack(out)

    def predict(self, x: Any, topk: int = 5, clips: int = 1) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Top-k ``[{"label", "score"}, ...]`` for a path or a (T, H, W, 3) uint8 array; a list of those
        gives one such list per item. A file that cannot be decoded raises ``DecodeError``."""
        _check_count("topk", topk)
        s = self.scores(x, clips)
        return self.top(s, topk) if s.ndim == 1 else [self.top(row, topk) for row in s]

    def timeline(self, path: str | Path, window: float, stride: float | None = None, **options: Any) -> Timeline:
        """Per-window top-k over a long video and its segments; see ``sevnet.deploy.timeline.run_timeline``."""
        from .timeline import run_timeline

        return run_timeline(self, path, window, stride, **options)

    def long_video_warning(self, num_frames: int, fps: float) -> str | None:
        """A warning when one clip per file would see a long video very differently from training."""
        return long_video_warning(self.clip_spec, num_frames, fps)


def _is_frame_list(x: Sequence[Any]) -> bool:
    return len(x) > 0 and all(isinstance(f, np.ndarray) and f.ndim == 3 for f in x)


# Segment sampling spreads T frames over the whole file: past this gap between sampled frames the
# model sees a slideshow (a Something-Something clip of 16 frames over ~4 s has gaps of 0.25 s).
MAX_SEGMENT_GAP_S = 1.0
# Dense sampling sees one span in the middle of the file: warn past this many spans of video.
MAX_DENSE_SPANS = 4.0


def long_video_warning(spec: ClipSpec, num_frames: int, fps: float) -> str | None:
    """The reason a single label for this file is doubtful, or None."""
    duration = num_frames / fps
    trained = spec.seconds_at(fps)
    hint = "use --window SEC (and --stride SEC) for a timeline"
    if trained is not None and duration > MAX_DENSE_SPANS * trained:
        return (
            f"the video lasts {duration:.1f} s but the model was trained on clips of about {trained:.1f} s: "
            f"one prediction describes only part of it; {hint}"
        )
    if spec.sampling == "segment" and duration / spec.num_frames > MAX_SEGMENT_GAP_S:
        return (
            f"the video lasts {duration:.1f} s: the model's {spec.num_frames} frames would be "
            f"{duration / spec.num_frames:.1f} s apart (a slideshow, not the motion it was trained on); {hint}"
        )
    return None


def load(
    path: str | Path,
    backend: str | None = None,
    checkpoint: str | Path | None = None,
    clip_seconds: float | None = None,
    device: str = "cpu",
    precision: str = "auto",
) -> Predictor:
    """A Predictor for a ``.safetensors`` checkpoint (PyTorch), an ``.onnx`` file (ONNX Runtime) or an
    OpenVINO ``.xml`` (float32 or int8); exported files need their ``.sevnet.json`` sidecar.
    ``checkpoint``: refuse an exported file that was not exported from it. ``clip_seconds``: the
    training clip's duration, when known (it is not stored by training). ``device``: where a checkpoint
    runs (``cpu``, ``cuda``, ``cuda:N`` or ``auto``: a GPU when there is one); ``precision``: auto
    (bf16 autocast on a GPU, float32 on a CPU), float32 or bf16."""
    path = Path(path)
    kind = MODEL_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ModelFileError(f"{path}: unknown model format (expected .safetensors, .onnx or .xml)")
    if kind == "torch":
        runner, meta = load_runner(checkpoint=path, backend=backend, device=device, precision=precision)
    else:
        runner, meta = load_runner(checkpoint=checkpoint, model_file=path, backend=backend, device=device)
    if clip_seconds is not None:
        meta = ModelCard.from_meta(meta).with_clip_seconds(clip_seconds).to_meta()
    return Predictor(runner, meta, backend or kind, str(path))


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint's model weights into ``model`` (e.g. a bare ``create_model(...)`` with the
    checkpoint's name, classes and overrides) and return it. Checkpoint keys carry a ``model.``
    prefix, so ``load_state_dict(safetensors.load_file(path))`` alone does not fit; this strips it,
    loads strictly and raises ``CheckpointError`` naming the file if the shapes differ."""
    tensors, _ = read_checkpoint(path)
    _load(unwrap_model(model), tensors, path)
    return model

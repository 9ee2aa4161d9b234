"""A procedural temporal-reasoning benchmark: 12 classes that only motion and temporal order
tell apart, in the spirit of Something-Something.

The classes come in six pairs; the second class of each pair is, by construction, the first one
played backwards (moving left / moving right, rising / falling, approaching / receding, rotating
clockwise / counter-clockwise, appearing / disappearing, splitting / merging). So any single frame,
or the set of frames, is equally likely under both classes of a pair: only the order of the frames
gives the class away. Nuisances: object shape, colour and texture, background gradient and clutter,
distractor objects, speed, start position, sensor noise. Three options, off in the benchmark, make the
look more varied for pretraining (``SyntheticSpec.textured``, ``camera``, ``occluder``): multi-scale
noise textures for the background and the object, a hand-held camera moving over the scene, and a bar
in front of it. A fourth, ``vocabulary="wide"``, adds six pairs of whole-scene changes for the
motion prior: the camera panning, tilting, zooming and rolling over a still scene, the light dimming,
the focus going (each with its time reversal), so the prior learns what a moving camera and a changing
image look like besides moving things.

Every clip is a pure function of (seed, index): deterministic, and cheap enough (about 1 ms for
8 frames of 64x64) to build thousands in seconds. ``tools/ssv2_layout.py`` (in a checkout, not in the
package) saves the benchmark as real VP9 .webm files in the Something-Something V2 layout, so the same
reader that reads the real dataset reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from .config import DataConfig, Reverse
from .registry import register_dataset_format

# (forward class, its time reversal); "template" is the SSv2-style name of each class.
PAIRS: list[tuple[str, str]] = [
    ("Moving something from left to right", "Moving something from right to left"),
    ("Moving something up", "Moving something down"),
    ("Moving something closer to the camera", "Moving something away from the camera"),
    ("Turning something clockwise", "Turning something counter-clockwise"),
    ("Something appearing", "Something disappearing"),
    ("Splitting something into two pieces", "Putting two pieces of something together"),
]
CLASSES: list[str] = [name for pair in PAIRS for name in pair]
# Whole-scene pairs, only in the "wide" vocabulary (the motion prior's): a still scene, the camera or the light moves.
SCENE_PAIRS: list[tuple[str, str]] = [
    ("Camera panning left", "Camera panning right"),
    ("Camera tilting up", "Camera tilting down"),
    ("Camera zooming in", "Camera zooming out"),
    ("Camera rolling clockwise", "Camera rolling counter-clockwise"),
    ("Light dimming", "Light brightening"),
    ("Going out of focus", "Coming into focus"),
]
# Things entering the picture or hiding each other, only in the "full" vocabulary.
FRAME_PAIRS: list[tuple[str, str]] = [
    ("Something entering the frame", "Something leaving the frame"),
    ("Covering something with something", "Uncovering something"),
]
VOCABULARIES: dict[str, list[tuple[str, str]]] = {
    "benchmark": PAIRS,
    "wide": PAIRS + SCENE_PAIRS,
    "full": PAIRS + SCENE_PAIRS + FRAME_PAIRS,
}


def class_names(vocabulary: str = "benchmark") -> list[str]:
    """The classes of a vocabulary, each pair's forward class first."""
    if vocabulary not in VOCABULARIES:
        raise ConfigError(f"data.synthetic.vocabulary: {vocabulary!r} is not one of {sorted(VOCABULARIES)}")
    return [name for pair in VOCABULARIES[vocabulary] for name in pair]


def partner(label: int) -> int:
    """The class whose clips are this class's clips played backwards."""
    return label ^ 1


@dataclass(frozen=True)
class SyntheticSpec:
    num_frames: int = 8
    size: int = 64
    noise: float = 6.0  # std of per-pixel sensor noise (0-255 scale)
    distractors: int = 2  # static-ish distractor objects
    clutter: int = 5  # background blobs
    textured: bool = False  # multi-scale noise textures instead of a flat gradient background and plain objects
    camera: float = 0.0  # hand-held camera: drift over the clip and shake, in pixels (everything moves with it)
    occluder: float = 0.0  # probability of a textured bar in front of the scene, fixed on screen
    vocabulary: str = "benchmark"  # "wide": also the six whole-scene pairs (SCENE_PAIRS); "full": and FRAME_PAIRS


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # disc
        return dy**2 + dx**2 <= r**2
    if kind == 1:  # square
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    return (dy >= -r) & (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.55)  # triangle


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) float texture: plain, striped or checked, in a random colour."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(90, 255, 3)
    kind = rng.integers(3)
    if kind == 0:
        pattern = np.ones((size, size))
    elif kind == 1:
        period = rng.integers(3, 7)
        pattern = 0.6 + 0.4 * (((xx + yy) // period) % 2)
    else:
        period = rng.integers(3, 7)
        pattern = 0.6 + 0.4 * (((xx // period) + (yy // period)) % 2)
    return pattern[..., None] * base


def render_clip(label: int, index: int, seed: int, spec: SyntheticSpec = SyntheticSpec()) -> np.ndarray:
    """Clip ``index`` of class ``label``: uint8 (T, H, W, 3). Odd labels are their pair's forward
    process rendered then reversed in time (so reversing one gives a valid clip of the other)."""
    rng = np.random.default_rng([seed, index, label // 2])
    frames = _render_forward(label // 2, rng, spec)
    return frames[::-1].copy() if label % 2 else frames


def _noise_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (h, w, 3) float texture: random noise at 4 scales (coarse to fine, 1/f weights), between two
    random colours."""
    total = np.zeros((h, w), np.float32)
    for cells, weight in ((3, 1.0), (6, 0.6), (12, 0.35), (24, 0.2)):
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        ys, xs = np.linspace(0, cells, h), np.linspace(0, cells, w)
        y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        a, b = grid[y0][:, x0], grid[y0][:, x0 + 1]
        c, d = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
        total += weight * ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy)
    total = (total - total.min()) / max(float(np.ptp(total)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return c0 + (c1 - c0) * total[..., None]


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, spec: SyntheticSpec) -> np.ndarray:
    """A random gradient plus static clutter blobs: float (H, W, 3)."""
    s = spec.size
    if spec.textured:
        background = _noise_texture(rng, *yy.shape)
    else:
        g0, g1 = rng.uniform(10, 120, 3), rng.uniform(10, 120, 3)
        axis = xx if rng.random() < 0.5 else yy
        background = g0 + (g1 - g0) * (axis / s)[..., None]
    for _ in range(spec.clutter):
        m = _shape_mask(rng.integers(3), yy, xx, rng.uniform(0, s), rng.uniform(0, s), rng.uniform(2, 5))
        background[m] = rng.uniform(20, 160, 3)
    return background


def _object_masks(pair: int, p: float, offset: float, kind: int, yy: np.ndarray, xx: np.ndarray, cy0: float,
                  cx0: float, r: float) -> tuple[list[np.ndarray], float]:  # fmt: skip
    """The moving object's masks at progress ``p`` along pair ``pair``'s forward process, and its opacity."""
    s = yy.shape[0]
    if pair == 0:  # left -> right
        return [_shape_mask(kind, yy, xx, cy0, r + p * (s - 2 * r), r)], 1.0
    if pair == 1:  # bottom -> top (rising)
        return [_shape_mask(kind, yy, xx, s - r - p * (s - 2 * r), cx0, r)], 1.0
    if pair == 2:  # growing: approaching the camera
        return [_shape_mask(kind, yy, xx, cy0, cx0, r * (0.45 + 1.3 * p))], 1.0
    if pair == 3:  # clock hand turning clockwise (image y points down)
        angle = 2 * np.pi * (0.75 * p + offset)
        ey, ex = cy0 + np.sin(angle) * 1.6 * r, cx0 + np.cos(angle) * 1.6 * r
        dist = np.abs((yy - cy0) * np.cos(angle) - (xx - cx0) * np.sin(angle))
        along = (yy - cy0) * np.sin(angle) + (xx - cx0) * np.cos(angle)
        hand = (dist <= r * 0.3) & (along >= 0) & (along <= 1.6 * r)
        return [hand, _shape_mask(0, yy, xx, ey, ex, r * 0.55)], 1.0
    if pair == 4:  # fading in: appearing
        return [_shape_mask(kind, yy, xx, cy0, cx0, r * 1.2)], min(1.0, p * 1.2)
    gap = p * 0.3 * s  # one object splitting into two halves that move apart
    return [_shape_mask(kind, yy, xx, cy0, cx0 - gap, r), _shape_mask(kind, yy, xx, cy0, cx0 + gap, r)], 1.0


def _camera_path(rng: np.random.Generator, spec: SyntheticSpec, margin: int) -> np.ndarray:
    """(T, 2) whole-pixel (dy, dx) offsets of a hand-held camera: a drift across the clip plus shake, up to
    about ``spec.camera`` pixels, within ``margin`` (the scene the background has around the frame)."""
    if not spec.camera:
        return np.zeros((spec.num_frames, 2), int)
    drift = rng.uniform(-1, 1, 2) * spec.camera * 0.7
    path = np.linspace(-0.5, 0.5, spec.num_frames)[:, None] * drift
    path = path + rng.normal(0, spec.camera * 0.15, (spec.num_frames, 2))
    return np.clip(np.round(path), 1 - margin, margin - 1).astype(int)


def _occluder(rng: np.random.Generator, spec: SyntheticSpec, yy: np.ndarray, xx: np.ndarray) -> tuple | None:
    """With probability ``spec.occluder``: (mask, colours) of a bar in front of the scene, fixed on screen."""
    if not spec.occluder or rng.random() >= spec.occluder:
        return None
    s = spec.size
    width, at = rng.uniform(0.08, 0.16) * s, rng.uniform(0.2, 0.8) * s
    bar = (np.abs(xx - at) <= width / 2) if rng.random() < 0.5 else (np.abs(yy - at) <= width / 2)
    colours = _noise_texture(rng, s, s) if spec.textured else np.broadcast_to(rng.uniform(0, 255, 3), (s, s, 3))
    return bar, colours


def _render_forward(index: int, rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """Forward clip of pair ``index`` of the spec's vocabulary."""
    names = VOCABULARIES[spec.vocabulary][index]
    if names in SCENE_PAIRS:
        return _render_scene_change(SCENE_PAIRS.index(names), rng, spec)
    pair = (PAIRS + FRAME_PAIRS).index(names)  # 0-5: the benchmark's; 6: entering the frame; 7: covering
    t_count, s = spec.num_frames, spec.size
    margin = int(np.ceil(spec.camera)) + 2 if spec.camera else 0
    big_yy, big_xx = np.mgrid[-margin : s + margin, -margin : s + margin].astype(np.float32)
    background = _background(rng, big_yy, big_xx, spec)  # the scene around the frame, for the camera to move over
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    cam = _camera_path(rng, spec, margin)
    occluder = _occluder(rng, spec, yy, xx)
    distractors = [
        (
            rng.integers(3),
            rng.uniform(6, s - 6),
            rng.uniform(6, s - 6),
            rng.uniform(3, 6),
            rng.uniform(60, 200, 3),
        )
        for _ in range(spec.distractors)
    ]
    texture = _noise_texture(rng, s, s) if spec.textured else _texture(rng, s)
    kind = rng.integers(3)
    r = rng.uniform(0.09, 0.14) * s
    speed = rng.uniform(0.6, 1.0)  # fraction of the full path covered by the clip
    offset = rng.uniform(0, 1 - speed)
    cy0, cx0 = rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s
    arrival = _Arrival.draw(pair, rng, spec, cy0, cx0, r) if pair >= len(PAIRS) else None
    frames = np.empty((t_count, s, s, 3), np.float32)
    for t in range(t_count):
        p = offset + speed * t / max(t_count - 1, 1)  # progress along the path, in [0, 1]
        cy, cx = cam[t]
        frame = background[margin + cy : margin + cy + s, margin + cx : margin + cx + s].copy()
        sy, sx = yy + cy, xx + cx  # scene coordinates seen at each pixel
        for dk, dy, dx, dr, dc in distractors:  # distractors jitter in place
            m = _shape_mask(dk, sy, sx, dy + rng.normal(0, 0.7), dx + rng.normal(0, 0.7), dr)
            frame[m] = dc
        if arrival is not None:  # FRAME_PAIRS
            masks, alpha = arrival.masks(p, kind, sy, sx, cy0, cx0, r, frame), 1.0
        else:
            masks, alpha = _object_masks(pair, p, offset, kind, sy, sx, cy0, cx0, r)
        for m in masks:
            frame[m] = alpha * texture[m] + (1 - alpha) * frame[m]
        if occluder is not None:
            frame[occluder[0]] = occluder[1][occluder[0]]
        frames[t] = frame
    frames += rng.normal(0, spec.noise, frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Arrival:
    """FRAME_PAIRS' mover: along its path it comes to rest at the object's place (cy0, cx0) from ``start`` (an
    offset from there), eased, at rest for the last quarter; a clip covers 60-100% of the path, as in the
    benchmark's pairs. Entering: from wholly outside a frame edge. Covering: a disc big enough to hide any
    shape, from 35-50% of the frame away, over a ``still`` thing (its shape and texture) at the rest point."""

    start: tuple[float, float]
    still: tuple[int, np.ndarray] | None = None
    cover: bool = False  # the mover is a disc big enough to hide any shape at the rest point

    @classmethod
    def draw(cls, pair: int, rng: np.random.Generator, spec: SyntheticSpec, cy0: float, cx0: float,
             r: float) -> _Arrival:  # fmt: skip
        s = spec.size
        if FRAME_PAIRS[pair - len(PAIRS)][0] == "Something entering the frame":
            out = 1.4 * r  # beyond the edge: wholly outside the frame
            edges = [(-(cy0 + out), 0.0), (s - cy0 + out, 0.0), (0.0, -(cx0 + out)), (0.0, s - cx0 + out)]
            return cls(edges[int(rng.integers(4))])
        theta, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.5) * s
        texture = _noise_texture(rng, s, s) if spec.textured else _texture(rng, s)
        return cls((np.sin(theta) * dist, np.cos(theta) * dist), (int(rng.integers(3)), texture), cover=True)

    def masks(self, p: float, kind: int, yy: np.ndarray, xx: np.ndarray, cy0: float, cx0: float, r: float,
              frame: np.ndarray) -> list[np.ndarray]:  # fmt: skip
        """The mover's mask at progress ``p`` along its path; draws the still thing into ``frame`` first."""
        if self.still is not None:
            m = _shape_mask(self.still[0], yy, xx, cy0, cx0, r)
            frame[m] = self.still[1][m]
        away = (1 - min(p / 0.75, 1.0)) ** 2
        cy, cx = cy0 + self.start[0] * away, cx0 + self.start[1] * away
        return [_shape_mask(0, yy, xx, cy, cx, 1.35 * r) if self.cover else _shape_mask(kind, yy, xx, cy, cx, r)]


def _bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) sampled at float pixel coordinates ``y``, ``x`` (clamped to the image)."""
    h, w = image.shape[:2]
    y, x = np.clip(y, 0, h - 1.001), np.clip(x, 0, w - 1.001)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _gaussian_blur(frame: np.ndarray, sigma: float) -> np.ndarray:
    """``frame`` (H, W, 3) blurred by a separable Gaussian of std ``sigma`` pixels (edges repeated)."""
    radius = int(np.ceil(3 * sigma))
    if radius < 1:
        return frame
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    h, w = frame.shape[:2]
    padded = np.pad(frame, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    frame = sum(wk * padded[k : k + h] for k, wk in enumerate(weights))
    padded = np.pad(frame, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(wk * padded[:, k : k + w] for k, wk in enumerate(weights))


def _render_scene_change(kind: int, rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """Forward clip of whole-scene pair ``kind`` (SCENE_PAIRS): a still scene (background, clutter, a few
    objects) that the camera pans over, tilts over, zooms into or rolls over, or whose light dims, or that
    goes out of focus. The hand-held shake, occluder and noise options apply as in the benchmark."""
    t_count, s = spec.num_frames, spec.size
    big_yy, big_xx = np.mgrid[-s : 2 * s, -s : 2 * s].astype(np.float32)  # the scene: the frame and a frame around it
    scene = _background(rng, big_yy, big_xx, spec)
    texture = _noise_texture(rng, *big_yy.shape) if spec.textured else None
    for _ in range(4 * spec.clutter + spec.distractors + 1):  # things all over the scene, for the camera to pass
        mask = _shape_mask(rng.integers(3), big_yy, big_xx, *rng.uniform(-s, 2 * s, 2), rng.uniform(0.06, 0.14) * s)
        scene[mask] = texture[mask] * rng.uniform(0.5, 1.2) if texture is not None else rng.uniform(40, 240, 3)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) - (s - 1) / 2  # frame coordinates about its centre
    shake = _camera_path(rng, spec, margin=s // 4)
    occluder = _occluder(rng, spec, yy + (s - 1) / 2, xx + (s - 1) / 2)
    speed = rng.uniform(0.6, 1.0)
    p = rng.uniform(0, 1 - speed) + speed * np.linspace(0, 1, t_count)  # progress along the change, in [0, 1]
    shift, zoom, angle = np.zeros((t_count, 2)), np.ones(t_count), np.zeros(t_count) + rng.uniform(-0.1, 0.1)
    gain, sigma = np.ones(t_count), np.zeros(t_count)
    if kind == 0:  # panning left: the view moves left, the scene slides right
        shift[:, 1] = -(p - 0.5) * rng.uniform(0.4, 0.8) * s
    elif kind == 1:  # tilting up
        shift[:, 0] = -(p - 0.5) * rng.uniform(0.4, 0.8) * s
    elif kind == 2:  # zooming in: the view narrows
        zoom = rng.uniform(1.6, 2.4) ** -p
    elif kind == 3:  # rolling clockwise: the scene turns counter-clockwise on screen
        angle = angle + rng.uniform(0.25, 0.5) * np.pi * p
    elif kind == 4:  # light dimming
        gain = 1 - (1 - rng.uniform(0.0, 0.15)) * p ** rng.uniform(0.7, 1.5)
    else:  # going out of focus
        sigma = rng.uniform(1.0, 2.0) * s / 64 * p**1.5
    frames = np.empty((t_count, s, s, 3), np.float32)
    for t in range(t_count):
        cos, sin = np.cos(angle[t]), np.sin(angle[t])
        sy = zoom[t] * (cos * yy + sin * xx) + shift[t, 0] + shake[t, 0] + (s - 1) / 2 + s
        sx = zoom[t] * (cos * xx - sin * yy) + shift[t, 1] + shake[t, 1] + (s - 1) / 2 + s
        frame = _gaussian_blur(_bilinear(scene, sy, sx), sigma[t]) * gain[t]
        if occluder is not None:
            frame[occluder[0]] = occluder[1][occluder[0]]
        frames[t] = frame
    frames += rng.normal(0, spec.noise, frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)


def make_split(num_clips: int, seed: int, spec: SyntheticSpec = SyntheticSpec()) -> tuple[np.ndarray, np.ndarray]:
    """``num_clips`` clips with balanced labels: (N, T, H, W, 3) uint8 and (N,) int64."""
    labels = np.arange(num_clips) % len(class_names(spec.vocabulary))
    clips = np.stack([render_clip(int(lab), i, seed, spec) for i, lab in enumerate(labels)])
    return clips, labels.astype(np.int64)


class SyntheticVideoDataset(Dataset):
    """In-memory clips with the engine's item format; normalised like real data."""

    classes = CLASSES
    multi_label = False

    def __init__(
        self,
        clips: np.ndarray,
        labels: np.ndarray,
        mean: list[float],
        std: list[float],
        train: bool,
        classes: list[str] | None = None,
    ) -> None:
        self.clips, self.labels, self.train = clips, labels, train
        if classes is not None:
            self.classes = classes
        self.mean = torch.tensor(mean).view(3, 1, 1, 1) * 255
        self.std = torch.tensor(std).view(3, 1, 1, 1) * 255
        self.frame_order: str = "forward"  # "reversed" / "shuffled": the temporal-sensitivity check
        # data.reverse: auto in training: each class's time-reversed partner. Exact here, not read from the
        # names: every class is its pair's process played backwards (render_clip), so the partner is label ^ 1.
        self.reversal: list[int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = key[0] if isinstance(key, tuple) else key
        frames = torch.from_numpy(self.clips[index])
        if self.frame_order == "reversed":
            frames = frames.flip(0)
        elif self.frame_order == "shuffled":
            perm = torch.randperm(len(frames), generator=torch.Generator().manual_seed(index))
            frames = frames[perm]
        target = int(self.labels[index])
        if self.train and self.reversal is not None and bool(torch.rand(()) < 0.5):
            frames, target = frames.flip(0), self.reversal[target]
        clip = (frames.permute(3, 0, 1, 2).float() - self.mean) / self.std  # (3, T, H, W)
        return {
            "clip": clip if self.train else clip[None],
            "target": torch.tensor(target),
            "index": index,
        }


_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
LOOK_OPTIONS = {"textured", "camera", "occluder"}  # off in the benchmark; on in the motion prior's config


@register_dataset_format("synthetic")
def build_synthetic_dataset(cfg: DataConfig, split: str, train: bool) -> SyntheticVideoDataset:
    """``data.format: synthetic``; options in ``data.synthetic``: num_train, num_val, seed, size,
    noise, distractors, clutter, textured, camera, occluder, vocabulary. The clip length is
    ``data.num_frames``."""
    opts = dict(cfg.synthetic or {})
    known = {"num_train", "num_val", "seed", "size", "noise", "distractors", "clutter", "vocabulary"} | LOOK_OPTIONS
    if set(opts) - known:
        raise ConfigError(f"unknown data.synthetic option(s) {sorted(set(opts) - known)}; valid: {sorted(known)}")
    spec = SyntheticSpec(
        num_frames=cfg.num_frames,
        size=int(opts.get("size", 64)),
        noise=float(opts.get("noise", 6.0)),
        distractors=int(opts.get("distractors", 2)),
        clutter=int(opts.get("clutter", 5)),
        textured=bool(opts.get("textured", False)),
        camera=float(opts.get("camera", 0.0)),
        occluder=float(opts.get("occluder", 0.0)),
        vocabulary=str(opts.get("vocabulary", "benchmark")),
    )
    classes = class_names(spec.vocabulary)
    is_train = split in ("train", "training")
    count = int(opts.get("num_train", 2400) if is_train else opts.get("num_val", 480))
    seed = int(opts.get("seed", 0)) * 2 + (0 if is_train else 1)  # disjoint train / held-out clips
    key = (spec, count, seed)
    if key not in _CACHE:
        if len(_CACHE) >= 2:  # keep the last train and held-out splits, not every one ever built
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make_split(count, seed, spec)
    clips, labels = _CACHE[key]
    dataset = SyntheticVideoDataset(clips, labels, list(cfg.mean), list(cfg.std), train, classes)
    if train and cfg.reverse == Reverse.auto:
        dataset.reversal = [label ^ 1 for label in range(len(classes))]
    return dataset

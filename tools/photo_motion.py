"""Small video classification datasets built from real photographs, written as real VP9 videos.

A dataset generator, not part of the ``sevnet`` package: ``python tools/photo_motion.py OUT --look
objects|scenes|photos`` from a checkout (needs scikit-image: ``pip install scikit-image``, or the dev extra).

Why: the built-in benchmark (``sevnet.data.synthetic``) is flat coloured shapes on gradients. Training
defaults (augmentation, learning rate, epochs, clip length) chosen on it alone may only suit that one
look. The two motion looks keep its key property, 12 classes in 6 pairs whose second class is exactly the
first played backwards (so only temporal order tells a pair apart), but every pixel comes from real
photographs and textures shipped inside scikit-image (``skimage.data``; no download), with camera
motion, colour jitter and sensor noise, and are saved as real .webm files in the class-folder layout
``root/{train,val}/<class name>/<id>.webm``.

Two motion looks, each a different kind of image statistics, and a look-defined set:

``objects``: a photo sprite (a face, a cat, a cup, a coin, a rocket, a motorcycle, a stone horse...,
soft-masked) moving over a real textured background (brick, grass, gravel or a large photo crop) seen
by a slowly panning, shaking camera. Classes: moving left / moving right, moving up / moving down,
approaching / receding, turning clockwise / turning counter-clockwise, sliding in / sliding out (enters
from a frame edge and stops, or the reverse), covering / uncovering (a second sprite moves over the
first and stays in front of it, or the reverse). A static distractor sprite appears in half the clips.

``scenes``: full-frame camera motion over a real photograph (moon, hubble deep field, retina,
immunohistochemistry, cell, coins, printed page, handwriting, cameraman, and colour photos). Classes,
named after what the camera does: panning left / panning right (the view moves left: the picture slides
right), tilting up / tilting down, zooming in / zooming out, rotating clockwise / rotating
counter-clockwise (the picture turns clockwise on screen), going out of focus / coming into focus,
fading to black / fading from black. Nuisances: handheld shake, drift, flicker and a small object
crossing the frame in a random direction.

``photos``: the opposite kind of dataset, where the class is the look and motion says nothing: which of
12 photographs of ``scenes`` (moon, camera, page, text, hubble deep field, retina, immunohistochemistry,
cell, coins, astronaut, coffee, chelsea) the camera films, each clip with one of the 12 camera motions
of ``scenes`` drawn at random. A check that a recipe made for motion (StillMix, time reversal) does not
cost a dataset whose classes are told apart by their look.

Every clip is a pure function of (look, seed, split, index): ``render_clip`` seeds its generator with
them. In ``objects`` and ``scenes``, odd labels are their pair's forward clip reversed in time, so
``render_clip(look, partner(label), i, seed) == render_clip(look, label, i, seed)[::-1]``.
Class folders sort alphabetically, not in label order: ``photo_motion.json`` at the dataset root lists
the classes in label order and each class's partner (none in ``photos``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageFilter

LOOKS = ("objects", "scenes", "photos")
_PAIRS: dict[str, list[tuple[str, str]]] = {
    "objects": [
        ("moving left", "moving right"),
        ("moving up", "moving down"),
        ("approaching", "receding"),
        ("turning clockwise", "turning counter-clockwise"),
        ("sliding in", "sliding out"),
        ("covering", "uncovering"),
    ],
    "scenes": [
        ("panning left", "panning right"),
        ("tilting up", "tilting down"),
        ("zooming in", "zooming out"),
        ("rotating clockwise", "rotating counter-clockwise"),
        ("going out of focus", "coming into focus"),
        ("fading to black", "fading from black"),
    ],
}
MANIFEST = "photo_motion.json"
VERSION = 1  # of the generator; recorded in the manifest, so a changed generator rewrites old datasets
_BILINEAR = Image.Resampling.BILINEAR
_NORMAL_LUT = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)

# Sprites: (image, crop box (y0, x0, y1, x1) as fractions of the image, mask). Coins are circles
# found in ``coins`` (centre and radius as fractions of its width); "horse" is the silhouette in
# ``horse`` filled with a tinted gravel texture (a stone statue).
_COINS = [(0.143, 0.871, 0.075), (0.615, 0.904, 0.082), (0.862, 0.449, 0.07)]
_SPRITES: list[tuple[str, tuple[float, float, float, float], str]] = [
    ("astronaut", (0.02, 0.27, 0.38, 0.62), "ellipse"),  # face
    ("astronaut", (0.0, 0.68, 0.55, 0.86), "ellipse"),  # space shuttle
    ("astronaut", (0.64, 0.52, 1.0, 1.0), "ellipse"),  # helmet
    ("astronaut", (0.64, 0.25, 0.82, 0.43), "ellipse"),  # mission patch
    ("chelsea", (0.05, 0.12, 1.0, 0.88), "ellipse"),  # cat
    ("coffee", (0.0, 0.15, 0.95, 0.85), "ellipse"),  # cup on saucer
    ("rocket", (0.25, 0.42, 0.97, 0.58), "ellipse"),
    ("motorcycle", (0.22, 0.0, 0.88, 0.98), "ellipse"),
    ("camera", (0.12, 0.0, 1.0, 0.62), "ellipse"),  # cameraman
    ("retina", (0.0, 0.0, 1.0, 1.0), "ellipse"),  # eye fundus disc
    ("logo", (0.02, 0.02, 0.98, 0.98), "ellipse"),
    ("horse", (0.0, 0.0, 1.0, 1.0), "horse"),
    ("motorcycle", (0.58, 0.67, 0.93, 0.93), "ellipse"),  # front wheel
    ("motorcycle", (0.57, 0.14, 0.83, 0.34), "ellipse"),  # rear wheel
    ("chelsea", (0.3, 0.24, 0.58, 0.45), "ellipse"),  # cat's eye
    ("coffee", (0.55, 0.5, 0.85, 0.66), "ellipse"),  # spoon
    ("astronaut", (0.0, 0.0, 0.6, 0.16), "ellipse"),  # flag
    ("immunohistochemistry", (0.58, 0.48, 1.0, 0.88), "ellipse"),  # a stained gland
    *[("coins", (cy - r * 1.4, cx - r * 1.1, cy + r * 1.4, cx + r * 1.1), "ellipse") for cy, cx, r in _COINS],
]
_TEXTURES = ("brick", "grass", "gravel")
_BACKGROUNDS = (
    *_TEXTURES,
    "coffee",
    "motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "camera",
    "astronaut",
    "chelsea",
    "rocket",
)
_SCENES = (
    "moon",
    "camera",
    "page",
    "text",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "cell",
    "coins",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle",
    "brick",
    "gravel",
)
_PHOTOS = _SCENES[:12]  # the classes of the photos look: the photographs of scenes, textures left out


def classes(look: str) -> list[str]:
    """The 12 class names of ``look`` in label order (pairs side by side: forward, then reversed; in
    ``photos``, the photographs)."""
    if look == "photos":
        return list(_PHOTOS)
    if look not in _PAIRS:
        raise ValueError(f"unknown look {look!r}; choose one of {LOOKS}")
    return [name for pair in _PAIRS[look] for name in pair]


def partner(label: int) -> int:
    """The class whose clips are this class's clips played backwards."""
    return label ^ 1


# --- images ----------------------------------------------------------------------------------------
NEEDS_SKIMAGE = (
    "tools/photo_motion.py renders its clips from scikit-image's sample photographs, which sevnet does not "
    "otherwise need: pip install scikit-image (scripts/setup.sh and the dev extra, pip install '.[dev]', have it)"
)


@cache
def _photo(name: str) -> np.ndarray:
    """A ``skimage.data`` image as uint8 (H, W, 3) RGB (grey images repeated; horse: its silhouette)."""
    try:
        from skimage import data
    except ModuleNotFoundError:
        raise ModuleNotFoundError(NEEDS_SKIMAGE) from None

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if img.dtype == bool:
        img = np.where(img, 255, 0).astype(np.uint8)  # horse: a black silhouette on white
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


@lru_cache(maxsize=64)
def _level(name: str, level: int) -> Image.Image:
    """The photo shrunk by a factor ``2 ** (level / 2)`` (a half-octave pyramid, built on demand)."""
    img = Image.fromarray(_photo(name))
    if level == 0:
        return img
    f = 2 ** (-level / 2)
    return img.resize((max(2, round(img.width * f)), max(2, round(img.height * f))), Image.Resampling.LANCZOS)


def _warp(
    img: Image.Image,
    centre: tuple[float, float],
    scale: float,
    angle: float,
    size: tuple[int, int],
    anchor: tuple[float, float] | None = None,
) -> Image.Image:
    """Sample ``img`` so that output point ``anchor`` (x, y; default the frame centre) shows source point
    ``centre`` (x, y), with ``scale`` source pixels per output pixel and the content turned clockwise by
    ``angle`` radians (image y points down)."""
    h, w = size
    ax, ay = anchor if anchor is not None else (w / 2, h / 2)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    matrix = (cos, sin, centre[0] - cos * ax - sin * ay, -sin, cos, centre[1] + sin * ax - cos * ay)
    return img.transform((w, h), Image.Transform.AFFINE, matrix, resample=_BILINEAR)


def _colour_jitter(arr: np.ndarray, rng: np.random.Generator, tint: float) -> np.ndarray:
    """Random saturation, channel tint (up to ``tint``), contrast, brightness and gamma of a float image."""
    grey = arr.mean(axis=2, keepdims=True)
    arr = grey + rng.uniform(0.5, 1.3) * (arr - grey)
    arr = arr * rng.uniform(1 - tint, 1 + tint, 3).astype(np.float32)
    arr = (arr - 128) * rng.uniform(0.75, 1.2) + 128 + rng.uniform(-25, 25)
    arr = 255 * (np.clip(arr, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    return arr.astype(np.float32)


# --- camera views over a photo -----------------------------------------------------------------------
def _path_box(motion: dict[str, np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (lo, hi; x, y) of every frame's view, in base-scale pixels around the start centre."""
    h, w = size
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2
    cos, sin = np.cos(motion["angle"])[:, None], np.sin(motion["angle"])[:, None]
    rel = np.stack([cos * corners[:, 0] + sin * corners[:, 1], -sin * corners[:, 0] + cos * corners[:, 1]], -1)
    rel = motion["m"][:, None, :] + motion["zoom"][:, None, None] * rel
    return rel.min(axis=(0, 1)), rel.max(axis=(0, 1))


def _view_frames(
    name: str,
    rng: np.random.Generator,
    motion: dict[str, np.ndarray],
    size: tuple[int, int],
    fill: tuple[float, float],
    tint: float,
    soften: float = 0.0,
) -> list[Image.Image]:
    """T RGB frames of a camera over photo ``name``. ``motion``: per-frame view centre
    offset ``m`` (T, 2; output pixels), relative ``zoom`` (T,; 1 = base, < 1 zoomed in), ``angle`` (T,;
    radians, content clockwise) and optional ``blur`` (T,; Gaussian radius, output pixels). The base
    scale keeps the whole path inside the photo, covering a ``fill`` fraction of it; the place is drawn
    again (up to 4 times) where the view would be nearly flat. ``soften``: a constant blur radius."""
    m, zoom, angle = motion["m"], motion["zoom"], motion["angle"]
    lo, hi = _path_box(motion, size)
    src_h, src_w = _photo(name).shape[:2]
    s0 = min((src_w - 4) / (hi[0] - lo[0]), (src_h - 4) / (hi[1] - lo[1])) * rng.uniform(*fill)
    pyramid = _level(name, max(0, math.ceil(2 * math.log2(max(s0 * zoom.max() / 1.2, 1e-6)))))
    f = pyramid.width / src_w
    for _ in range(4):
        c0 = rng.uniform(2 - s0 * lo, np.array([src_w, src_h]) - 2 - s0 * hi)
        box = np.concatenate([np.floor((c0 + s0 * lo) * f - 2), np.ceil((c0 + s0 * hi) * f + 2)]).astype(int)
        box = np.clip(box, 0, [pyramid.width, pyramid.height] * 2)
        crop = np.asarray(pyramid.crop(tuple(box)), np.float32)
        if crop.std() > 12:
            break
    crop_img = Image.fromarray(_colour_jitter(crop, rng, tint).round().astype(np.uint8))
    if soften > 0:
        crop_img = crop_img.filter(ImageFilter.GaussianBlur(float(soften * s0 * f)))
    blur = motion.get("blur")
    frames = []
    for t in range(len(m)):
        centre = (c0 + s0 * m[t]) * f - box[:2]
        frame = _warp(crop_img, (centre[0], centre[1]), s0 * zoom[t] * f, angle[t], size)
        if blur is not None and blur[t] > 0.1:
            frame = frame.filter(ImageFilter.GaussianBlur(float(blur[t])))
        frames.append(frame)
    return frames


def _handheld(rng: np.random.Generator, count: int, drift: float, shake: float) -> np.ndarray:
    """(T, 2) camera offsets: a straight drift of up to ``drift`` pixels in a random direction plus a
    smooth random shake of about ``shake`` pixels, centred on the middle frame."""
    theta = rng.uniform(0, 2 * np.pi)
    line = np.linspace(-0.5, 0.5, count)[:, None] * rng.uniform(0, drift) * np.array([np.cos(theta), np.sin(theta)])
    walk = np.cumsum(rng.normal(0, 1, (count, 2)), axis=0)
    walk = np.apply_along_axis(lambda v: np.convolve(v, np.ones(3) / 3, mode="same"), 0, walk)
    walk -= walk.mean(axis=0)
    return line + walk * shake / max(float(np.abs(walk).max()), 1e-6) * rng.uniform(0.3, 1.0)


def _progress(rng: np.random.Generator, count: int) -> np.ndarray:
    """(T,) progress along a path in [0, 1]: a random ``speed`` fraction of it from a random start."""
    speed = rng.uniform(0.7, 1.0)
    return rng.uniform(0, 1 - speed) + speed * np.linspace(0, 1, count)


def _ease_out(rng: np.random.Generator, count: int) -> np.ndarray:
    """(T,) progress that decelerates from 0 to 1 by a random time, then rests at 1."""
    u = np.clip(np.linspace(0, 1, count) / rng.uniform(0.45, 0.75), 0, 1)
    return 1 - (1 - u) ** 2


def _finish(
    frames: list[Image.Image], rng: np.random.Generator, gain: np.ndarray, noise: tuple[float, float]
) -> np.ndarray:
    """Stack the frames; per-frame gain, Gaussian sensor noise of a random std in ``noise``; uint8."""
    clip = np.stack([np.asarray(frame) for frame in frames])
    if np.any(gain != 1):
        clip = (clip * gain.astype(np.float32)[:, None, None, None]).round()
    lut = (_NORMAL_LUT * rng.uniform(*noise)).round().astype(np.int16)
    out = clip.astype(np.int16) + lut[rng.integers(0, 256, clip.shape, dtype=np.uint8)]
    return np.clip(out, 0, 255).astype(np.uint8)


def _flicker(rng: np.random.Generator, count: int, prob: float) -> np.ndarray:
    """(T,) brightness gain: a slow random sinusoid with probability ``prob``, else ones."""
    if rng.random() >= prob:
        return np.ones(count)
    t = np.arange(count)
    return 1 + rng.uniform(0.03, 0.1) * np.sin(2 * np.pi * t / rng.uniform(3, 12) + rng.uniform(0, 2 * np.pi))


# --- sprites -----------------------------------------------------------------------------------------
@dataclass
class _Layer:
    """An RGBA sprite and its per-frame screen pose (x, y: centre; zoom; angle)."""

    sprite: Image.Image
    x: np.ndarray
    y: np.ndarray
    zoom: np.ndarray
    angle: np.ndarray


@lru_cache(maxsize=1)
def _round_sprites() -> tuple[int, ...]:
    """The sprites with an aspect ratio under 1.6: those that can cover another one."""
    keep = []
    for i, (name, (y0, x0, y1, x1), mask) in enumerate(_SPRITES):
        h, w = _photo(name).shape[:2]
        aspect = (x1 - x0) * w / ((y1 - y0) * h)
        if 1 / 1.6 < aspect < 1.6 and mask != "horse":
            keep.append(i)
    return tuple(keep)


def _sprite(
    rng: np.random.Generator,
    longest: float,
    exclude: int = -1,
    shortest: float = 0.0,
    pool: tuple[int, ...] | None = None,
) -> tuple[Image.Image, int]:
    """A random photo sprite from ``pool`` (default all; never number ``exclude``) whose longer side is
    ``longest`` pixels (or shorter side ``shortest``, if given), as an RGBA image with a soft mask; and
    its number."""
    options = [i for i in (pool if pool is not None else range(len(_SPRITES))) if i != exclude]
    choice = options[int(rng.integers(len(options)))]
    name, (y0, x0, y1, x1), mask = _SPRITES[choice]
    src = _level(name, 0)
    w, h = src.size
    box = (max(0, round(x0 * w)), max(0, round(y0 * h)), min(w, round(x1 * w)), min(h, round(y1 * h)))
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = shortest / min(bw, bh) if shortest else longest / max(bw, bh)
    out = (max(2, round(bw * scale)), max(2, round(bh * scale)))
    rgb = np.asarray(src.resize(out, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0), np.float32)
    if mask == "horse":  # the silhouette, filled with a tinted crop of gravel
        alpha = 1 - rgb[..., 0] / 255
        rgb = np.asarray(_level("gravel", 0).resize(out, _BILINEAR, box=(0, 0, 256, 256)), np.float32)
        rgb = rgb * rng.uniform(0.65, 1.1, 3).astype(np.float32)
    else:
        yy, xx = np.mgrid[-1 : 1 : out[1] * 1j, -1 : 1 : out[0] * 1j]
        alpha = np.clip((1 - np.sqrt(xx**2 + yy**2)) / rng.uniform(0.08, 0.25), 0, 1)
    rgb = _colour_jitter(rgb, rng, 0.1) * rng.uniform(0.8, 1.2)
    rgba = np.concatenate([np.clip(rgb, 0, 255), 255 * alpha[..., None]], axis=2)
    return Image.fromarray(rgba.round().astype(np.uint8)), choice


def _paste(frames: list[Image.Image], layer: _Layer, camera: np.ndarray) -> None:
    """Composite ``layer`` over ``frames`` in place, its pose shifted against the camera offsets (only
    the box around the sprite is warped and blended)."""
    w, h = frames[0].size
    centre = (layer.sprite.width / 2, layer.sprite.height / 2)
    radius = math.hypot(*centre) * layer.zoom + 2
    for t, frame in enumerate(frames):
        x, y = layer.x[t] - camera[t, 0], layer.y[t] - camera[t, 1]
        x0, y0 = max(0, int(x - radius[t])), max(0, int(y - radius[t]))
        x1, y1 = min(w, int(x + radius[t]) + 1), min(h, int(y + radius[t]) + 1)
        if x1 > x0 and y1 > y0:
            box = (y1 - y0, x1 - x0)
            warped = _warp(layer.sprite, centre, 1 / layer.zoom[t], layer.angle[t], box, (x - x0, y - y0))
            frame.paste(warped, (x0, y0), warped)


def _object_layers(pair: int, rng: np.random.Generator, count: int, h: int, w: int) -> list[_Layer]:
    """The forward process of an ``objects`` pair: the moving sprite(s) and their screen poses."""
    side = min(h, w)
    p, ones = _progress(rng, count), np.ones(count)
    x, y = rng.uniform(0.35, 0.65) * w + 0 * ones, rng.uniform(0.35, 0.65) * h + 0 * ones
    x, y = x + rng.uniform(-0.06, 0.06) * side * p, y + rng.uniform(-0.06, 0.06) * side * p  # slight drift
    zoom, angle = ones.copy(), rng.uniform(-0.25, 0.25) + rng.uniform(-0.15, 0.15) * p
    longest = rng.uniform(0.32, 0.45) * side
    if pair == 0:  # moving left
        start, length = rng.uniform(0.72, 0.9), rng.uniform(0.45, 0.7)
        x = (start - length * p) * w
    elif pair == 1:  # moving up
        start, length = rng.uniform(0.72, 0.9), rng.uniform(0.45, 0.7)
        y = (start - length * p) * h
    elif pair == 2:  # approaching: growing
        longest, zoom = rng.uniform(0.55, 0.75) * side, rng.uniform(0.3, 0.45) ** (1 - p)
    elif pair == 3:  # turning clockwise
        angle = rng.uniform(-np.pi, np.pi) + rng.uniform(0.6, 1.1) * np.pi * p
    sprite, first = _sprite(rng, longest)
    layers = [_Layer(sprite, x, y, zoom, angle)]
    if pair == 4:  # sliding in from a frame edge, then resting
        e, edge = _ease_out(rng, count), int(rng.integers(4))
        reach = max(sprite.width, sprite.height) / 2 + (x[0] if edge == 0 else w - x[0] if edge == 1 else 0)
        reach += y[0] if edge == 2 else h - y[0] if edge == 3 else 0
        dx, dy = [(-1, 0), (1, 0), (0, -1), (0, 1)][edge]
        layers[0].x, layers[0].y = x + dx * reach * (1 - e), y + dy * reach * (1 - e)
    elif pair == 5:  # covering: a bigger second sprite moves over the first and stays in front
        e, theta = _ease_out(rng, count), rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.35, 0.5) * side
        cover, _ = _sprite(rng, 0, first, max(sprite.size) * rng.uniform(1.1, 1.25), _round_sprites())
        bx = x[-1] + rng.uniform(-0.04, 0.04) * side + np.cos(theta) * dist * (1 - e)
        by = y[-1] + rng.uniform(-0.04, 0.04) * side + np.sin(theta) * dist * (1 - e)
        layers[0].x, layers[0].y = x[-1] + 0 * ones, y[-1] + 0 * ones
        layers.append(_Layer(cover, bx, by, ones, rng.uniform(-0.25, 0.25) + 0 * ones))
    return layers


def _render_objects(pair: int, rng: np.random.Generator, count: int, size: tuple[int, int]) -> np.ndarray:
    """Forward clip of an ``objects`` pair: uint8 (T, H, W, 3)."""
    h, w = size
    camera = _handheld(rng, count, drift=0.15 * w, shake=0.015 * w)
    background = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    motion = {"m": camera, "zoom": np.ones(count), "angle": rng.normal(0, 0.004, count).cumsum()}
    soften = rng.uniform(0.8, 2.0) * min(h, w) / 128 if rng.random() < 0.3 else 0.0  # shallow depth of field
    frames = _view_frames(background, rng, motion, size, (0.35, 0.9), 0.12 if background in _TEXTURES else 0.08, soften)
    if rng.random() < 0.5:  # a static distractor, smaller and away from the middle
        sprite, _ = _sprite(rng, rng.uniform(0.18, 0.28) * min(h, w))
        ones, off = np.ones(count), rng.uniform(0.25, 0.45, 2) * rng.choice([-1, 1], 2)
        _paste(frames, _Layer(sprite, (0.5 + off[0]) * w * ones, (0.5 + off[1]) * h * ones, ones, 0 * ones), camera)
    for layer in _object_layers(pair, rng, count, h, w):
        _paste(frames, layer, camera)
    return _finish(frames, rng, rng.uniform(0.8, 1.15) * _flicker(rng, count, 0.2), (2.0, 7.0))


def _render_scenes(
    pair: int, rng: np.random.Generator, count: int, size: tuple[int, int], photo: str | None = None
) -> np.ndarray:
    """Forward clip of a ``scenes`` pair: uint8 (T, H, W, 3), of ``photo`` or of one drawn at random."""
    h, w = size
    p, ones = _progress(rng, count), np.ones(count)
    m = _handheld(rng, count, drift=0.1 * w, shake=0.012 * w)
    zoom, angle, gain = ones.copy(), rng.uniform(-0.05, 0.05) + 0 * ones, ones.copy()
    motion = {"m": m, "zoom": zoom, "angle": angle}
    if pair == 0:  # panning left: the view moves left, the picture slides right
        m[:, 0] -= (p - 0.5) * rng.uniform(0.4, 0.8) * w
    elif pair == 1:  # tilting up
        m[:, 1] -= (p - 0.5) * rng.uniform(0.4, 0.8) * h
    elif pair == 2:  # zooming in
        motion["zoom"] = rng.uniform(1.7, 2.6) ** -p
    elif pair == 3:  # rotating clockwise (on screen)
        motion["angle"] = rng.uniform(-0.5, 0.5) + rng.uniform(0.3, 0.6) * np.pi * p
    elif pair == 4:  # going out of focus
        motion["blur"] = rng.uniform(2.5, 4.5) * min(h, w) / 128 * p**1.5
    else:  # fading to black
        gain = 1 - (1 - rng.uniform(0.0, 0.1)) * p ** rng.uniform(0.7, 1.5)
    name = photo or _SCENES[int(rng.integers(len(_SCENES)))]
    frames = _view_frames(name, rng, motion, size, (0.3, 0.95), 0.12)
    if rng.random() < 0.5:  # a small object crossing the frame in a random direction
        sprite, _ = _sprite(rng, rng.uniform(0.12, 0.2) * min(h, w))
        theta, start = rng.uniform(0, 2 * np.pi), rng.uniform([0.25, 0.25], [0.75, 0.75]) * [w, h]
        path = np.linspace(-0.5, 0.5, count) * rng.uniform(0.3, 0.8) * min(h, w)
        x, y = start[0] + np.cos(theta) * path, start[1] + np.sin(theta) * path
        _paste(frames, _Layer(sprite, x, y, ones, rng.uniform(-np.pi, np.pi) + 0 * ones), np.zeros((count, 2)))
    return _finish(frames, rng, gain * _flicker(rng, count, 0.4), (1.5, 8.0))


def render_clip(
    look: str, label: int, index: int, seed: int, num_frames: int = 24, size: tuple[int, int] = (128, 128)
) -> np.ndarray:
    """Clip ``index`` of class ``label`` of ``look``: uint8 (T, H, W, 3), ``size`` = (H, W). Odd labels
    of objects and scenes are their pair's forward clip reversed in time; a photos clip is a scenes
    clip of the class's photograph, its motion (one of 12) drawn."""
    names, size = classes(look), (int(size[0]), int(size[1]))
    if not 0 <= label < len(names):
        raise ValueError(f"label {label} out of range for {len(names)} classes")
    if look == "photos":
        rng = np.random.default_rng([LOOKS.index(look), seed, index, label])
        motion = int(rng.integers(12))
        frames = _render_scenes(motion // 2, rng, num_frames, size, photo=names[label])
        return frames[::-1].copy() if motion % 2 else frames
    rng = np.random.default_rng([LOOKS.index(look), seed, index, label // 2])
    render = _render_objects if look == "objects" else _render_scenes
    frames = render(label // 2, rng, num_frames, size)
    return frames[::-1].copy() if label % 2 else frames


# --- writing -----------------------------------------------------------------------------------------
def _write_webm(path: Path, clip: np.ndarray, fps: int) -> None:
    """Encode a uint8 (T, H, W, 3) clip as VP9 .webm (written to a temporary name, then renamed)."""
    import av

    tmp = path.with_name(path.stem + ".tmp.webm")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libvpx-vp9", rate=fps)
        stream.height, stream.width = clip.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "b:v": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1"}
        for frame in clip:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    tmp.replace(path)


def _write_one(job: tuple[Path, str, int, int, int, int, tuple[int, int], int]) -> None:
    """Render and encode one clip: (path, look, label, index, seed, num_frames, size, fps)."""
    path, look, label, index, seed, num_frames, size, fps = job
    _write_webm(path, render_clip(look, label, index, seed, num_frames, size), fps)


def _run(jobs: list, workers: int, progress: bool, desc: str) -> None:
    """``_write_one`` over ``jobs``, in ``workers`` processes (0: the CPU cores, up to 4), with a bar."""
    from tqdm import tqdm

    workers = workers or min(4, os.cpu_count() or 1)
    with tqdm(total=len(jobs), desc=desc, disable=None if progress else True, unit="video") as bar:  # None: tty only
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_one, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers)))):
                    bar.update()
        else:
            for job in jobs:
                _write_one(job)
                bar.update()


def write_folder_dataset(
    root: str | Path,
    look: str,
    train_per_class: int = 58,
    val_per_class: int = 20,
    num_frames: int = 24,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    progress: bool = True,
    fps: int = 12,
    workers: int = 0,
) -> Path:
    """Write ``root/{train,val}/<class name>/<id>.webm`` and ``root/photo_motion.json`` (the arguments,
    the classes in label order, their partners, the generator's ``VERSION``). Skips the work when that
    manifest matches and every video is there. Train clips use seed ``2 * seed``, val clips
    ``2 * seed + 1``; clip ``k`` of class ``c`` is ``render_clip(look, c, k * 12 + c, ...)``, so the
    two classes of a pair hold different videos.
    ``workers``: processes rendering and encoding in parallel (the files are the same for any number);
    0 (the default) uses up to 4, one per CPU core."""
    root, names, size = Path(root), classes(look), (int(size[0]), int(size[1]))
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must be even (VP9 yuv420p), got {size}")
    partners = {n: None if look == "photos" else names[partner(i)] for i, n in enumerate(names)}
    manifest = dict(version=VERSION, look=look, train_per_class=train_per_class, val_per_class=val_per_class,
                    num_frames=num_frames, size=list(size), seed=seed, fps=fps, classes=names,
                    partners=partners)  # fmt: skip
    jobs = []
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for k in range(count):
            for c, name in enumerate(names):
                path = root / split / name / f"{k:05d}.webm"
                jobs.append((path, look, c, k * len(names) + c, 2 * seed + (split == "val"), num_frames, size, fps))
    done = (root / MANIFEST).exists() and json.loads((root / MANIFEST).read_text()) == manifest
    if done and all(job[0].exists() for job in jobs) and sum(1 for _ in root.glob("*/*/*.webm")) == len(jobs):
        return root
    (root / MANIFEST).unlink(missing_ok=True)
    for folder in {job[0].parent for job in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    _run(jobs, workers, progress, f"photo_motion {look}")
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return root


def main(argv: list[str] | None = None) -> None:
    """``python tools/photo_motion.py OUT --look objects|scenes|photos [...]``."""
    parser = argparse.ArgumentParser(prog="python tools/photo_motion.py", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--look", choices=LOOKS, required=True,
        help="objects: photo sprites moving; scenes: camera motion over photographs (both 12 classes in time-reversed "
        "pairs); photos: the class is which photograph is filmed, with any camera motion",
    )  # fmt: skip
    parser.add_argument("--train-per-class", type=int, default=58)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="128x128", help="HxW, even numbers (default 128x128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument(
        "--workers", type=int, default=0, help="processes writing in parallel (default: the cores, up to 4)"
    )
    args = parser.parse_args(argv)
    if importlib.util.find_spec("skimage") is None:  # before any folder is made
        parser.exit(2, f"error: {NEEDS_SKIMAGE}\n")
    height, width = (int(v) for v in args.size.lower().split("x"))
    root = write_folder_dataset(
        args.out,
        args.look,
        args.train_per_class,
        args.val_per_class,
        args.frames,
        (height, width),
        args.seed,
        progress=True,
        fps=args.fps,
        workers=args.workers,
    )
    print(f"wrote {root} ({args.look}: {', '.join(classes(args.look))})")


if __name__ == "__main__":
    main()

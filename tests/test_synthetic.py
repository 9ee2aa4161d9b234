"""The built-in temporal-reasoning benchmark: determinism, coverage, time-reversal pairs, SSv2 layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from ssv2_layout import write_ssv2_layout  # tools/ssv2_layout.py (tests/conftest.py puts tools/ on sys.path)

from sevnet.data import DataConfig, build_dataset
from sevnet.data.synthetic import (
    CLASSES,
    PAIRS,
    SCENE_PAIRS,
    SyntheticSpec,
    class_names,
    make_split,
    partner,
    render_clip,
)

SPEC = SyntheticSpec(num_frames=8, size=32)


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    a, la = make_split(24, seed=3, spec=SPEC)
    b, lb = make_split(24, seed=3, spec=SPEC)
    c, _ = make_split(24, seed=4, spec=SPEC)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_every_class_is_produced_and_balanced() -> None:
    clips, labels = make_split(48, seed=0, spec=SPEC)
    assert len(CLASSES) >= 12 and sorted(set(labels.tolist())) == list(range(len(CLASSES)))
    assert np.bincount(labels).min() == np.bincount(labels).max() == 4
    assert clips.shape == (48, 8, 32, 32, 3) and clips.dtype == np.uint8


def test_pairs_differ_only_in_temporal_order() -> None:
    for label in range(len(CLASSES)):
        clip = render_clip(label, 7, seed=1, spec=SPEC)
        other = render_clip(partner(label), 7, seed=1, spec=SPEC)
        # reversing a clip of one class gives a clip of its partner
        assert np.array_equal(clip[::-1], other), CLASSES[label]
        # and the clip is not a still picture: frames differ, so order carries information
        assert np.abs(clip[0].astype(int) - clip[-1].astype(int)).mean() > 1.0


def test_single_frames_do_not_give_the_class_away() -> None:
    # Within a pair, the set of frames is identical; only the order differs.
    for forward, _backward in PAIRS:
        label = CLASSES.index(forward)
        frames_a = {f.tobytes() for f in render_clip(label, 2, 0, SPEC)}
        frames_b = {f.tobytes() for f in render_clip(partner(label), 2, 0, SPEC)}
        assert frames_a == frames_b


def test_the_look_diverse_options_keep_pairs_and_change_the_look() -> None:
    """textured / camera / occluder (what the motion prior is trained on): time-reversal pairs still hold;
    the background is a multi-scale texture, not a smooth gradient; the hand-held camera moves the
    background between frames; with every option off, clips are the plain benchmark's exactly."""
    import dataclasses

    rich = dataclasses.replace(SPEC, textured=True, camera=4.0, occluder=1.0, distractors=0, clutter=0)
    plain = dataclasses.replace(SPEC, distractors=0, clutter=0)
    for label in range(len(CLASSES)):
        clip = render_clip(label, 7, seed=1, spec=rich)
        assert np.array_equal(clip[::-1], render_clip(partner(label), 7, seed=1, spec=rich)), CLASSES[label]

    def off_plane(clip: np.ndarray) -> float:  # std of the frames' median around its best-fitting plane
        median = np.median(clip.astype(np.float32), 0)  # the moving object mostly gone
        yy, xx = np.mgrid[0 : median.shape[0], 0 : median.shape[1]]
        a = np.stack([np.ones(yy.size), yy.ravel(), xx.ravel()], 1)
        chans = [median[..., c].ravel() for c in range(3)]
        return float(np.std([v - a @ np.linalg.lstsq(a, v, rcond=None)[0] for v in chans]))

    clips = [render_clip(2 * k, k, 0, rich) for k in range(6)]
    plain_clips = [render_clip(2 * k, k, 0, plain) for k in range(6)]  # a gradient: on its plane but for the object
    assert np.mean([off_plane(c) for c in clips]) > 1.5 * np.mean([off_plane(c) for c in plain_clips])

    def corner_change(clip: np.ndarray) -> float:  # mean change of a screen corner from first to last frame
        return float(np.abs(clip[0, :6, :6].astype(int) - clip[-1, :6, :6].astype(int)).mean())

    assert max(corner_change(c) for c in clips) > 8  # the camera moved: the corner shows other texture
    still = dataclasses.replace(rich, camera=0.0, occluder=0.0)
    assert min(corner_change(render_clip(0, k, 0, still)) for k in range(3)) < 8
    # Options off: the benchmark's clips byte for byte as before the options existed (digest recorded then).
    plain_digest = hashlib.sha256(np.stack([render_clip(lab, lab + 3, 5, SPEC) for lab in range(12)]).tobytes())
    assert plain_digest.hexdigest() == "91d994158f859bc9000d77cbecf5a66c6b338c65991aac7bfeac3e86e0f8210e"


def test_the_wide_vocabulary_adds_whole_scene_changes_that_do_what_they_are_named() -> None:
    """vocabulary="wide" (the motion prior's): the benchmark's 12 classes first, then 12 whole-scene classes
    in time-reversal pairs. Each forward class changes the picture as named: a pan slides it sideways, a
    tilt up and down, a zoom in magnifies it, dimming darkens it, defocus removes its fine detail."""
    import dataclasses

    import pytest

    from sevnet.errors import ConfigError

    spec = dataclasses.replace(SPEC, size=48, vocabulary="wide", noise=0.0)
    names = class_names("wide")
    assert names[: len(CLASSES)] == CLASSES and len(names) == 2 * (len(PAIRS) + len(SCENE_PAIRS))
    for label in range(len(CLASSES), len(names)):
        clip = render_clip(label, 3, seed=2, spec=spec)
        assert clip.shape == (8, 48, 48, 3)
        assert np.array_equal(clip[::-1], render_clip(partner(label), 3, seed=2, spec=spec)), names[label]

    def forward(kind: int, k: int) -> np.ndarray:  # a forward clip of SCENE_PAIRS[kind], grey, float
        return render_clip(len(CLASSES) + 2 * kind, k, seed=4, spec=spec).astype(np.float32).mean(-1)

    def best_shift(a: np.ndarray, b: np.ndarray, axis: int) -> int:  # the shift of b along axis that best fits a
        scores = {d: np.abs(np.roll(a, d, axis)[12:-12, 12:-12] - b[12:-12, 12:-12]).mean() for d in range(-10, 11)}
        return min(scores, key=scores.get)

    def detail(frame: np.ndarray) -> float:  # mean absolute Laplacian: fine detail
        return float(np.abs(4 * frame[1:-1, 1:-1] - frame[:-2, 1:-1] - frame[2:, 1:-1] - frame[1:-1, :-2]
                            - frame[1:-1, 2:]).mean())  # fmt: skip

    for k in range(4):
        pan, tilt = forward(0, k), forward(1, k)
        assert best_shift(pan[3], pan[4], axis=1) > 0  # the view goes left, the picture slides right
        assert best_shift(tilt[3], tilt[4], axis=0) > 0  # the view goes up, the picture down
        zoom = forward(2, k)  # magnified: the centre of the last frame is the smoother, its detail spread out
        assert detail(zoom[-1]) < detail(zoom[0])
        light, focus = forward(4, k), forward(5, k)
        assert light[-1].mean() < 0.5 * light[0].mean()
        assert detail(focus[-1]) < 0.75 * detail(focus[0])
    with pytest.raises(ConfigError, match="vocabulary"):
        class_names("everything")
    cfg = DataConfig(format="synthetic", num_frames=8, synthetic={"num_train": 48, "num_val": 24, "size": 32,
                                                                  "vocabulary": "wide"})  # fmt: skip
    train = build_dataset(cfg, "train", train=True)
    assert train.num_classes == 24 and train.classes == names and sorted(set(train.labels.tolist())) == list(range(24))


def test_ssv2_layout_round_trip(tmp_path: Path) -> None:
    write_ssv2_layout(tmp_path, num_train=24, num_val=12, seed=0, spec=SPEC)
    cfg = DataConfig(format="ssv2", root=str(tmp_path), num_frames=8, train_scale=[32, 32], train_crop=32,
                     eval_scale=32, eval_crop=32, num_workers=0)  # fmt: skip
    train = build_dataset(cfg, "train", train=True)
    assert train.classes == CLASSES
    assert [int(train[i]["target"]) for i in range(len(train))] == [i % len(CLASSES) for i in range(24)]
    val = build_dataset(cfg, "validation", train=False)
    item = val[5]
    assert int(item["target"]) == 5 and item["clip"].shape == (1, 3, 8, 32, 32)
    # the decoded video is the rendered clip (up to VP9 compression)
    decoded = (item["clip"][0] * 0.225 + 0.45).clamp(0, 1) * 255
    rendered = torch.from_numpy(render_clip(5, 5, seed=1, spec=SPEC)).permute(3, 0, 1, 2).float()
    assert (decoded - rendered).abs().mean() < 12


def test_the_full_vocabulary_adds_things_entering_the_frame_and_covering_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """vocabulary="full": the wide vocabulary, then FRAME_PAIRS. Entering: the thing starts wholly outside a
    frame edge and comes in. Covering: a still thing visible at first is wholly hidden by the mover once it
    rests (the same clip rendered without the still thing ends on the same frame)."""
    import dataclasses

    from sevnet.data import synthetic

    spec = dataclasses.replace(SPEC, size=48, vocabulary="full", noise=0.0, distractors=0, clutter=0)
    names = class_names("full")
    assert names[: len(class_names("wide"))] == class_names("wide") and len(names) == len(class_names("wide")) + 4
    entering, covering = names.index("Something entering the frame"), names.index("Covering something with something")
    draw, drawn = synthetic._Arrival.draw.__func__, []

    def recorded(cls: type, pair: int, rng: np.random.Generator, spec: SyntheticSpec, cy0: float, cx0: float,
                 r: float) -> synthetic._Arrival:  # fmt: skip
        drawn.append((draw(cls, pair, rng, spec, cy0, cx0, r), cy0, cx0, r))
        return drawn[-1][0]

    monkeypatch.setattr(synthetic._Arrival, "draw", classmethod(recorded))
    for label in (entering, covering):
        for k in range(3):
            clip = render_clip(label, k, seed=2, spec=spec)
            assert np.array_equal(clip[::-1], render_clip(partner(label), k, seed=2, spec=spec)), names[label]
            assert not np.array_equal(clip[0], clip[-1]), names[label]
    for k in range(4):
        drawn.clear()
        render_clip(entering, k, seed=3, spec=spec)
        arrival, cy0, cx0, r = drawn[0]
        cy, cx = cy0 + arrival.start[0], cx0 + arrival.start[1]  # where its path starts: beyond an edge
        assert arrival.still is None and (cy <= -r or cy >= 48 + r or cx <= -r or cx >= 48 + r)
    plain = [render_clip(covering, k, seed=4, spec=spec) for k in range(8)]
    monkeypatch.setattr(synthetic._Arrival, "draw",
                        classmethod(lambda cls, *a: dataclasses.replace(draw(cls, *a), still=None)))  # fmt: skip
    at_rest = [k for k, clip in enumerate(plain) if np.array_equal(clip[-1], clip[-2])]
    assert len(at_rest) >= 2  # clips cover 60-100% of the path: most end at rest
    for k in at_rest:
        without = render_clip(covering, k, seed=4, spec=spec)
        assert not np.array_equal(plain[k][0], without[0]) and np.array_equal(plain[k][-1], without[-1])


def test_time_reversal_plays_half_the_training_clips_backwards_as_their_partner_class() -> None:
    """data.reverse=auto on generated data: every class is its pair's process played backwards, so a
    training clip is either as rendered with its label or reversed in time with label ^ 1 (both occur);
    held-out clips are never reversed."""
    cfg = DataConfig(format="synthetic", num_frames=8, reverse="auto",
                     synthetic={"num_train": 56, "num_val": 28, "size": 32, "vocabulary": "full"})  # fmt: skip
    train, val = build_dataset(cfg, "train", train=True), build_dataset(cfg, "validation", train=False)
    torch.manual_seed(0)
    reversed_count = 0
    for i in range(len(train)):
        item, label = train[i], int(train.labels[i])
        as_rendered = (torch.from_numpy(train.clips[i]).permute(3, 0, 1, 2).float() - train.mean) / train.std
        if int(item["target"]) == label:
            assert torch.equal(item["clip"], as_rendered)
        else:
            assert int(item["target"]) == label ^ 1 and torch.equal(item["clip"], as_rendered.flip(1))
            reversed_count += 1
    assert 10 < reversed_count < 46
    assert val.reversal is None and all(int(val[i]["target"]) == int(val.labels[i]) for i in range(len(val)))

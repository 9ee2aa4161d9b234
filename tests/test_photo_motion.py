"""The photo-motion datasets: deterministic clips of real photographs, exact time-reversed pairs, and
real .webm files in the class-folder layout that decode back to the clips' length and size."""

import json
import os

import av
import numpy as np
import pytest

pytest.importorskip("skimage")

import photo_motion as pm  # tools/photo_motion.py (tests/conftest.py puts tools/ on sys.path)

SMALL = {"num_frames": 8, "size": (64, 64)}


MOTION_LOOKS = ("objects", "scenes")


def test_classes_are_twelve_reversed_pairs():
    for look in MOTION_LOOKS:
        names = pm.classes(look)
        assert len(names) == len(set(names)) == 12
        assert all(pm.partner(pm.partner(i)) == i != pm.partner(i) for i in range(12))
    assert pm.classes("objects")[:2] == ["moving left", "moving right"]
    with pytest.raises(ValueError, match="unknown look"):
        pm.classes("cartoons")


@pytest.mark.parametrize("look", pm.LOOKS)
def test_render_is_deterministic_and_moves(look):
    clip = pm.render_clip(look, 0, 3, 7, **SMALL)
    assert clip.shape == (8, 64, 64, 3) and clip.dtype == np.uint8
    np.testing.assert_array_equal(clip, pm.render_clip(look, 0, 3, 7, **SMALL))
    assert not np.array_equal(clip, pm.render_clip(look, 0, 4, 7, **SMALL))  # another index: another clip
    assert not np.array_equal(clip, pm.render_clip(look, 0, 3, 8, **SMALL))  # another seed too
    assert clip.std() > 10  # a photograph, not a flat field
    assert np.abs(clip[0].astype(int) - clip[-1].astype(int)).mean() > 5  # something happens
    other = pm.render_clip(look, 2, 0, 0, num_frames=5, size=(48, 80))
    assert other.shape == (5, 48, 80, 3)


@pytest.mark.parametrize("look", MOTION_LOOKS)
def test_partner_class_is_the_clip_played_backwards(look):
    for label in range(0, 12, 2):
        forward = pm.render_clip(look, label, 11, 0, **SMALL)
        backward = pm.render_clip(look, pm.partner(label), 11, 0, **SMALL)
        np.testing.assert_array_equal(backward, forward[::-1])
        assert not np.array_equal(forward, backward)
    with pytest.raises(ValueError, match="out of range"):
        pm.render_clip(look, 12, 0, 0)


def test_photos_classes_are_photographs_filmed_with_any_motion(tmp_path):
    """The look-defined set: a class is a photograph; its clips are scenes clips of that photograph with
    one of the 12 camera motions drawn, so no class has a partner and motion tells nothing."""
    names = pm.classes("photos")
    assert len(set(names)) == 12 and names[0] == "moon" and set(names) <= set(pm._SCENES)
    clip = pm.render_clip("photos", 2, 5, 0, **SMALL)
    rng = np.random.default_rng([pm.LOOKS.index("photos"), 0, 5, 2])
    motion = int(rng.integers(12))
    expected = pm._render_scenes(motion // 2, rng, 8, (64, 64), photo="page")
    np.testing.assert_array_equal(clip, expected[::-1] if motion % 2 else expected)
    motions = {int(np.random.default_rng([pm.LOOKS.index("photos"), 0, i, 0]).integers(12)) for i in range(40)}
    assert len(motions) == 12  # every motion occurs in a class
    root = pm.write_folder_dataset(tmp_path / "photos", "photos", 1, 0, progress=False, workers=1, **SMALL)
    manifest = json.loads((root / pm.MANIFEST).read_text())
    assert manifest["classes"] == names and set(manifest["partners"].values()) == {None}
    assert len(list(root.glob("train/*/00000.webm"))) == 12


def _decode(path):
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_write_folder_dataset_decodes_back(tmp_path):
    root = pm.write_folder_dataset(tmp_path / "objects", "objects", 1, 1, progress=False, workers=1, **SMALL)
    names = pm.classes("objects")
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(names)
    assert sorted(p.name for p in (root / "val").iterdir()) == sorted(names)
    assert [p.name for p in (root / "train" / "moving left").iterdir()] == ["00000.webm"]
    assert len(list(root.glob("val/*/*.webm"))) == 12 and not list(root.glob("**/*.tmp.webm"))
    manifest = json.loads((root / pm.MANIFEST).read_text())
    assert manifest["classes"] == names and manifest["partners"]["moving left"] == "moving right"
    path = root / "val" / "approaching" / "00000.webm"
    frames = _decode(path)
    assert frames.shape == (8, 64, 64, 3)
    expected = pm.render_clip("objects", 4, 0 * 12 + 4, 1, **SMALL)  # val seed = 2 * seed + 1
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 12  # lossy, but the same clip
    stamp = os.stat(path).st_mtime_ns
    pm.write_folder_dataset(tmp_path / "objects", "objects", 1, 1, progress=False, **SMALL)  # complete: skipped
    assert os.stat(path).st_mtime_ns == stamp
    with pytest.raises(ValueError, match="even"):
        pm.write_folder_dataset(tmp_path / "odd", "objects", 1, 1, size=(63, 64), progress=False)


def test_cli_writes_scenes(tmp_path, capsys):
    pm.main([str(tmp_path / "scenes"), "--look", "scenes", "--train-per-class", "1", "--val-per-class", "1",
             "--frames", "6", "--size", "48x64"])  # fmt: skip
    assert "zooming in" in capsys.readouterr().out
    videos = sorted((tmp_path / "scenes").glob("*/*/*.webm"))
    assert len(videos) == 24
    assert _decode(tmp_path / "scenes" / "val" / "fading to black" / "00000.webm").shape == (6, 48, 64, 3)


def test_without_scikit_image_the_cli_says_what_to_install(tmp_path, monkeypatch, capsys):
    real = pm.importlib.util.find_spec
    monkeypatch.setattr(pm.importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(SystemExit) as stopped:
        pm.main([str(tmp_path / "x"), "--look", "scenes"])
    assert stopped.value.code == 2 and "pip install scikit-image" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

"""Data pipeline on real encoded files: every layout, decoding accuracy, sampling, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _videos import decode_index, truncate, write_frame_folder, write_video

from sevnet.data import (
    AnnotationError,
    DataConfig,
    DecodeError,
    SkipCounter,
    SkippedSamplesError,
    build_dataset,
    build_loader,
    probe_video,
    read_frame_folder,
    read_frames,
)
from sevnet.data.sampling import dense_indices, segment_indices

SMALL = {"num_frames": 4, "train_scale": [32, 40], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}


def cfg(root: Path, fmt: str, **kw) -> DataConfig:
    return DataConfig(format=fmt, root=str(root), **{"num_workers": 0, **SMALL, **kw})


def labels_of(ds) -> list:
    out = []
    for i in range(len(ds)):
        item = ds[i]
        assert "error" not in item, item
        out.append(item["target"].tolist())
    return out


# --- decoding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi"])
def test_decoder_returns_the_frames_asked_for(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"v{suffix}", num_frames=40)
    info = probe_video(path)
    assert info.num_frames == 40 and info.fps == pytest.approx(12) and info.duration == pytest.approx(40 / 12, 0.05)
    for wanted in ([0, 1, 2], [33, 34, 39], [21, 3, 21, 37], [38]):
        frames = read_frames(path, wanted)
        assert frames.dtype == torch.uint8 and frames.shape == (len(wanted), 48, 64, 3)
        assert [decode_index(f) for f in frames.numpy()] == wanted
    # past the end: the last frame is repeated (documented rule)
    assert [decode_index(f) for f in read_frames(path, [39, 45]).numpy()] == [39, 39]


def test_variable_frame_rate_video(tmp_path: Path) -> None:
    pts = [0, 1, 2, 5, 6, 7, 10, 11]  # gaps at 3-4 and 8-9
    path = write_video(tmp_path / "vfr.mkv", num_frames=8, pts=pts)
    frames = read_frames(path, [0, 3, 6, 10])
    # a gap resolves to the next frame that exists: index 3 -> the frame shown at pts 5 (4th frame)
    assert [decode_index(f) for f in frames.numpy()] == [0, 3, 4, 6]


def test_one_frame_video_and_short_clip(tmp_path: Path) -> None:
    path = write_video(tmp_path / "one.mp4", num_frames=1)
    assert probe_video(path).num_frames == 1
    idx = segment_indices(1, 8, train=False)
    assert idx == [0] * 8
    assert read_frames(path, idx).shape[0] == 8


def test_frame_folder(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "f", num_frames=12)
    frames = read_frame_folder(folder, [0, 5, 11])
    assert [decode_index(f) for f in frames.numpy()] == [0, 5, 11]


@pytest.mark.parametrize("kind", ["missing", "empty", "not_video", "truncated_head"])
def test_bad_files_raise_decode_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_video":
        path.write_text("this is a text file, not a video\n" * 50)
    elif kind == "truncated_head":
        write_video(path, num_frames=20)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DecodeError, match=str(path.name)):
        probe_video(path)
        read_frames(path, [0, 5])


# --- sampling ------------------------------------------------------------------------------------
def test_sampling_rules() -> None:
    assert segment_indices(80, 8, train=False) == [5, 15, 25, 35, 45, 55, 65, 75]
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = segment_indices(80, 8, train=True, rng=rng)
        assert all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(idx))
    assert segment_indices(3, 6, train=False) == [0, 0, 1, 1, 2, 2]  # short: repeat in order
    assert dense_indices(100, 4, 5, train=False) == [42, 47, 52, 57]
    assert dense_indices(10, 4, 5, train=False) == [0, 5, 9, 9]  # short: repeat the last frame
    starts = [dense_indices(100, 4, 5, train=False, clip=k, num_clips=3)[0] for k in range(3)]
    assert starts == sorted(starts) and len(set(starts)) == 3


# --- every layout --------------------------------------------------------------------------------
def test_ssv2_layout(tmp_path: Path) -> None:
    labels = {"Pushing something from left to right": "0", "Pushing something from right to left": "1",
              "Holding something next to something": "2"}  # fmt: skip
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    train = [{"id": "11", "template": "Pushing [something] from right to left", "label": "x", "placeholders": []},
             {"id": "12", "template": "Holding [something] next to [something]", "label": "y", "placeholders": []},
             {"id": "13", "template": "Pushing [something] from left to right", "label": "z", "placeholders": []}]  # fmt: skip
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(train))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(train[:1]))
    (tmp_path / "something-something-v2-test.json").write_text(json.dumps([{"id": "13"}]))
    for vid in ("11", "12", "13"):
        write_video(tmp_path / "20bn-something-something-v2" / f"{vid}.webm", num_frames=16)
    ds = build_dataset(cfg(tmp_path, "ssv2"), "train", train=True)
    assert ds.num_classes == 3 and not ds.multi_label and ds.classes[2].startswith("Holding")
    assert labels_of(ds) == [1, 2, 0]
    assert ds[0]["clip"].shape == (3, 4, 32, 32)
    val = build_dataset(cfg(tmp_path, "ssv2", eval_clips=2, eval_crops=3), "validation", train=False)
    a, b = val[0]["clip"], val[0]["clip"]
    assert a.shape == (6, 3, 4, 32, 32) and torch.equal(a, b)  # deterministic evaluation
    test = build_dataset(cfg(tmp_path, "ssv2"), "test", train=False)
    assert labels_of(test) == [-1]


def test_ssv1_frames_layout(tmp_path: Path) -> None:
    (tmp_path / "something-something-v1-labels.csv").write_text("Moving something up\nMoving something down\n")
    (tmp_path / "something-something-v1-train.csv").write_text("7;Moving something down\n8;Moving something up\n")
    for vid in ("7", "8"):
        write_frame_folder(tmp_path / "20bn-something-something-v1" / vid, num_frames=10)
    ds = build_dataset(cfg(tmp_path, "ssv1"), "train", train=True)
    assert labels_of(ds) == [1, 0] and ds[1]["clip"].shape == (3, 4, 32, 32)


@pytest.mark.parametrize("flat", [False, True])
def test_kinetics_layouts_and_missing_clips(tmp_path: Path, flat: bool) -> None:
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    rows = ['"passing American football (in game)",abc,10,20,train,0', "abseiling,def,0,10,train,0",
            "abseiling,gone,5,15,train,0"]  # fmt: skip
    (tmp_path / "train.csv").write_text(header + "\n".join(rows) + "\n")
    for label, yt, t0, t1 in [
        ("passing American football (in game)", "abc", 10, 20),
        ("abseiling", "def", 0, 10),
    ]:
        name = f"{yt}_{t0:06d}_{t1:06d}.mp4"
        write_video(tmp_path / "train" / (name if flat else f"{label}/{name}"), num_frames=12)
    ds = build_dataset(cfg(tmp_path, "kinetics400", sampling="dense", frame_stride=2), "train", train=True)
    assert ds.classes == ["abseiling", "passing American football (in game)"]
    assert labels_of(ds) == [1, 0]
    assert len(ds.missing) == 1 and "gone_000005_000015" in ds.missing[0]


def test_mit_and_mmit_layouts(tmp_path: Path) -> None:
    (tmp_path / "moments_categories.txt").write_text("running,0\njumping,1\nswimming,2\n")
    (tmp_path / "trainingSet.csv").write_text("running/a.mp4,running,3,0\njumping/b.mp4,jumping,2,1\n")
    for rel in ("running/a.mp4", "jumping/b.mp4"):
        write_video(tmp_path / "training" / rel, num_frames=10)
    assert labels_of(build_dataset(cfg(tmp_path, "mit"), "train", train=True)) == [0, 1]
    # M-MiT: labels as names on one line, as indices on the other
    (tmp_path / "mmit_train.csv").write_text("running/a.mp4,running,swimming\njumping/b.mp4,1,0\n")
    ds = build_dataset(cfg(tmp_path, "mmit", train_list="mmit_train.csv"), "train", train=True)
    assert ds.multi_label and labels_of(ds) == [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def test_finegym_layout(tmp_path: Path) -> None:
    names = ["0LtLS9wROrk_E_002407_002435_A_0003_0005", "0LtLS9wROrk_E_002407_002435_A_0007_0009"]
    (tmp_path / "gym99_train_element_v1.1.txt").write_text(f"{names[0]} 98\n{names[1]} 3\n")
    (tmp_path / "gym99_categories.txt").write_text("Clabel: 3; set: 1; Glabel: 4; (VT) round-off\n")
    for name in names:
        write_video(tmp_path / "subactions" / f"{name}.mp4", num_frames=10)
    ds = build_dataset(cfg(tmp_path, "gym99"), "train", train=True)
    assert ds.num_classes == 99 and ds.classes[3] == "(VT) round-off" and labels_of(ds) == [98, 3]


def test_generic_lists(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    write_video(tmp_path / "v" / "x.avi", num_frames=10)
    write_video(tmp_path / "v" / "y.mp4", num_frames=10)
    (tmp_path / "train_list.txt").write_text("v/x.avi 2\nv/y.mp4 0\n")
    ds = build_dataset(cfg(tmp_path, "video_list", labels_file="classes.txt"), "train", train=True)
    assert labels_of(ds) == [2, 0]
    (tmp_path / "ml.txt").write_text("v/x.avi 0 2\n")
    ds = build_dataset(cfg(tmp_path, "video_list", num_classes=3, multi_label=True, train_list="ml.txt"),
                       "train", train=True)  # fmt: skip
    assert labels_of(ds) == [[1.0, 0.0, 1.0]]
    write_frame_folder(tmp_path / "fr" / "f1", num_frames=6)
    (tmp_path / "frames.txt").write_text("fr/f1 6 1\n")
    ds = build_dataset(cfg(tmp_path, "frame_list", num_classes=3, train_list="frames.txt"), "train", train=True)
    assert labels_of(ds) == [1]


# --- malformed annotations: errors name the file and the line ----------------------------------
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("v/x.avi 2\nv/y.mp4\n", r"train_list.txt:2: expected"),
        ("v/x.avi 2\nv/y.mp4 7\n", r"train_list.txt:2: label 7 out of range"),
        ("v/x.avi 2\nv/x.avi 1\n", r"train_list.txt:2: duplicate id"),
        ("v/x.avi two\n", r"train_list.txt:1: label 'two' is not an integer"),
    ],
)
def test_malformed_generic_list(tmp_path: Path, content: str, needle: str) -> None:
    (tmp_path / "train_list.txt").write_text(content)
    with pytest.raises(AnnotationError, match=needle):
        build_dataset(cfg(tmp_path, "video_list", num_classes=3), "train", train=True)


def test_unknown_class_name_names_line(tmp_path: Path) -> None:
    (tmp_path / "something-something-v1-labels.csv").write_text("Moving something up\n")
    (tmp_path / "something-something-v1-train.csv").write_text("1;Moving something up\n2;Flying\n")
    with pytest.raises(AnnotationError, match=r"something-something-v1-train.csv:2: unknown class name 'Flying'"):
        build_dataset(cfg(tmp_path, "ssv1"), "train", train=True)


def test_unknown_config_key() -> None:
    from sevnet.data import to_data_config

    with pytest.raises(ValueError, match="num_frame"):
        to_data_config({"format": "ssv2", "num_frame": 8})


def test_inference_reads_frame_folders_with_the_checkpoints_template(tmp_path: Path) -> None:
    from sevnet.data.config import INFERENCE_KEYS
    from sevnet.deploy.predictor import inference_dataset

    folder = write_frame_folder(tmp_path / "clip", num_frames=6)
    for i in range(1, 7):  # a dataset whose frames are named frame_<i>.jpg, not 00001.jpg
        (folder / f"{i:05d}.jpg").rename(folder / f"frame_{i}.jpg")
    recorded = cfg(tmp_path, "frame_list", frame_template="frame_{}.jpg").to_dict()
    meta = {"data": {k: recorded[k] for k in INFERENCE_KEYS}, "class_names": ["a", "b"]}
    item = inference_dataset([folder], meta)[0]
    assert "error" not in item and item["clip"].shape == (1, 3, 4, 32, 32)


def test_format_registry_names_every_format_once() -> None:
    from sevnet.data import DataFormat
    from sevnet.data.formats import FORMATS
    from sevnet.data.registry import FORMAT_REGISTRY, register_format

    assert set(FORMATS) == set(DataFormat) and FORMAT_REGISTRY["synthetic"].dataset is not None
    assert FORMAT_REGISTRY["folder"].parse is not None and FORMAT_REGISTRY["folder"].dataset is None
    with pytest.raises(ValueError, match="registered twice"):
        register_format("ssv2", FORMAT_REGISTRY["ssv2"].parse)
    with pytest.raises(ValueError, match=r"data\.format: invalid value 'ssv3'; valid values: ssv2, ssv1"):
        DataConfig(format="ssv3")


# --- bad videos in a loader: skipped, counted, named; stop past the threshold -----------------
def test_loader_skips_and_counts_bad_videos(tmp_path: Path) -> None:
    write_video(tmp_path / "ok1.mp4", num_frames=12)
    write_video(tmp_path / "ok2.webm", num_frames=12)
    write_video(tmp_path / "ok3.avi", num_frames=3)  # shorter than the clip
    truncate(write_video(tmp_path / "trunc.mp4", num_frames=30), keep=0.05)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    names = ["ok1.mp4", "trunc.mp4", "ok2.webm", "empty.mp4", "missing.mp4", "text.mp4", "ok3.avi"]
    (tmp_path / "train_list.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
    c = cfg(tmp_path, "video_list", num_classes=2, num_workers=2)
    ds = build_dataset(c, "train", train=True)
    loader = build_loader(ds, batch_size=3, train=False, cfg_data=c)
    counter = SkipCounter(max_fraction=0.9, min_seen=1)
    good = []
    for batch in loader:
        counter.update(batch)
        if batch["clip"] is not None:
            good += batch["index"].tolist()
    skipped = sorted(Path(p).name for p, _ in counter.skipped)
    assert skipped == ["empty.mp4", "missing.mp4", "text.mp4", "trunc.mp4"]
    assert sorted(good) == [0, 2, 6]
    assert "empty.mp4" in counter.summary()
    strict = SkipCounter(max_fraction=0.2, min_seen=1)
    with pytest.raises(SkippedSamplesError, match=r"could not be loaded.*max_skip_fraction"):
        for batch in build_loader(ds, batch_size=7, train=False, cfg_data=c, num_workers=0):
            strict.update(batch)


def test_a_bad_file_drawn_again_counts_once_against_the_training_set() -> None:
    counter = SkipCounter(max_fraction=0.05, num_videos=24)
    for _ in range(5):  # the same bad file in 5 early batches: 1 of 24 videos (4.2%), not 5 of 20 draws
        counter.add(3, [("a/bad.mp4", "a/bad.mp4: cannot open")])
    assert counter.num_skipped == 5 and counter.bad_files == {"a/bad.mp4"}
    assert counter.summary() == "  a/bad.mp4: cannot open"  # once, the path not doubled
    with pytest.raises(SkippedSamplesError, match=r"(?s)2 of the 24 training videos .*data\.exclude_list"):
        counter.add(3, [("a/worse.mp4", "no such file")])


def test_train_augmentation_is_seeded_per_sample_and_epoch(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", num_frames=30)
    (tmp_path / "train_list.txt").write_text("a.mp4 0\n")
    ds = build_dataset(cfg(tmp_path, "video_list", num_classes=1), "train", train=True)
    assert torch.equal(ds[(0, 1)]["clip"], ds[(0, 1)]["clip"])
    assert not torch.equal(ds[(0, 1)]["clip"], ds[(0, 2)]["clip"])


def _v2_reference(train: bool, c: DataConfig):
    """The transforms as they were first written, with v2 transform classes: the reference."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    post = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(c.mean), std=list(c.std))]
    if train:
        steps = [v2.RandomShortestSize(min_size=list(range(c.train_scale[0], c.train_scale[1] + 1)), antialias=True),
                 v2.RandomCrop(c.train_crop, pad_if_needed=True)] + ([v2.RandomHorizontalFlip()] if c.flip == "on" else [])  # fmt: skip
        pipeline = v2.Compose([*steps, *post])
        return lambda f: pipeline(tv_tensors.Video(f.permute(0, 3, 1, 2))).as_subclass(torch.Tensor).permute(1, 0, 2, 3)
    resize, norm = v2.Resize(max(c.eval_scale, c.eval_crop), antialias=True), v2.Compose(post)
    return lambda f: norm(F.center_crop(resize(f.permute(0, 3, 1, 2)), [c.eval_crop] * 2)).permute(1, 0, 2, 3)[None]


def _smooth_frames(t: int, h: int, w: int, k: int) -> torch.Tensor:
    """uint8 (t, h, w, 3) frames of low-frequency patterns: resampling differences stay small on them."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    chans = [torch.sin(xx / (5 + c + k % 3) + c) * torch.cos(yy / (7 + c) + k) for c in range(3)]
    frame = torch.stack(chans, -1) * 100 + 128
    return torch.stack([frame.roll(i, 1) for i in range(t)]).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("flip", [False, True])
def test_transforms_equal_the_v2_pipeline(flip: bool) -> None:
    """Bit-identical clips (same kernels, same RNG draws in the same order) in evaluation and, in training,
    wherever the drawn scale needs no resampling of the crop (scales below the crop: zero padding), for
    portrait frames and flips; uint8 + normalize_clips gives the same. Other scales cut the crop from the
    source first: the same draws (the generator ends in the same state), and the same picture to within
    a sub-pixel shift (on smooth frames, closer to the pipeline's clip than that clip shifted one pixel;
    measured: 0.8-5.6 grey levels against 5-10)."""
    from sevnet.data import normalize_clips
    from sevnet.data.transforms import build_transform

    g = torch.Generator().manual_seed(0)
    sizes = [(48, 64), (64, 48), (30, 30), (40, 90)] * 4
    for scale, exact in (([20, 31], True), ([32, 60], False)):
        c = DataConfig(num_frames=3, train_scale=scale, train_crop=32, eval_scale=36, eval_crop=32, flip=flip)
        for train in (True, False) if exact else (True,):
            ours, ref = build_transform(train, c), _v2_reference(train, c)
            raw = build_transform(train, c, normalize=False)
            for k, (h, w) in enumerate(sizes):
                frames = torch.randint(0, 256, (3, h, w, 3), dtype=torch.uint8, generator=g)
                frames = frames if exact else _smooth_frames(3, h, w, k)
                outs, after = [], []
                for fn, x in ((ours, frames), (ref, frames), (raw, frames), (ref, frames.roll(1, 2))):
                    torch.manual_seed(k)
                    outs.append(fn(x))
                    after.append(torch.rand(1))
                assert outs[2].dtype == torch.uint8 and after[0] == after[1] == after[2]
                assert torch.equal(normalize_clips(outs[2], c.mean, c.std), outs[0])
                if exact:
                    assert torch.equal(outs[0], outs[1])
                else:  # closer to the pipeline's clip than that clip is to itself one pixel to the side
                    assert (outs[0] - outs[1]).abs().mean() < (outs[3] - outs[1]).abs().mean(), (k, h, w)


def test_training_crop_of_picked_frames_equals_crop_of_those_frames() -> None:
    """data.repeats cuts each clip from one decode: transform(frames, pick) selects the frames after the
    crop, and gives exactly transform(frames[pick]) (same draws), on both crop paths."""
    from sevnet.data.transforms import build_transform

    frames = torch.randint(0, 256, (9, 48, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pick = torch.tensor([0, 2, 2, 7, 8])
    for scale in ([20, 31], [32, 60]):
        for normalize in (False, True):
            transform = build_transform(True, DataConfig(train_scale=scale, train_crop=32, flip=True), normalize)
            for seed in range(6):
                torch.manual_seed(seed)
                picked = transform(frames, pick)
                torch.manual_seed(seed)
                assert torch.equal(picked, transform(frames.index_select(0, pick)))


def test_training_crop_stays_channels_last() -> None:
    """The uint8 training clip is a (3, T, H, W) view of channels-last bytes (what stack_clips and a
    channels-last model expect), on the resampled-window path and the padded one alike."""
    from sevnet.data.transforms import build_transform, is_channels_last

    for scale in ([20, 31], [32, 60]):
        c = DataConfig(num_frames=3, train_scale=scale, train_crop=32)
        clip = build_transform(True, c, normalize=False)(torch.zeros(3, 48, 64, 3, dtype=torch.uint8))
        assert clip.shape == (3, 3, 32, 32) and is_channels_last(clip)


def test_uint8_clips_normalised_by_batch_equal_float_clips(tmp_path: Path) -> None:
    """What the Trainer's loader ships (uint8_clips), normalised as a batch: the float clips exactly."""
    from sevnet.data import normalize_clips

    for i in range(3):
        write_video(tmp_path / f"{i}.mp4", num_frames=12)
    (tmp_path / "train_list.txt").write_text("0.mp4 0\n1.mp4 1\n2.mp4 0\n")
    c = cfg(tmp_path, "video_list", num_classes=2)
    for train in (True, False):
        ds = build_dataset(c, "train", train=train)
        want = torch.stack([ds[(i, 1)]["clip"] for i in range(3)])
        ds.uint8_clips = True
        got = torch.stack([ds[(i, 1)]["clip"] for i in range(3)])
        assert got.dtype == torch.uint8 and want.dtype == torch.float32
        assert torch.equal(normalize_clips(got, c.mean, c.std), want)


def test_quantize_says_when_it_calibrates_on_fewer_clips_than_asked(capsys) -> None:
    from sevnet.deploy.quantize import calibration_clips

    data = DataConfig(format="synthetic", num_frames=4, synthetic={"num_train": 3, "num_val": 2, "size": 16})
    assert len(calibration_clips(data, 8)) == 3
    assert "calibrating on 3 clips, not the 8 asked (the training set has 3 clips)" in capsys.readouterr().err

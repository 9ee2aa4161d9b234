"""Decoded-frame cache (sevnet.data.cache) on real encoded videos: same clips, reuse, rebuild, bad files."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
from _videos import decode_index, truncate, write_frame_folder, write_video
from PIL import Image
from torchvision.transforms.v2 import functional as F

from sevnet.data import DataConfig, SkipCounter, build_dataset, build_loader, read_frames, to_data_config
from sevnet.data.cache import CacheDamaged, cache_short_side
from sevnet.errors import ConfigError

# Videos are 48x64; the cache stores short side 36 (= max(train_scale, eval_scale)), 36x48: the same
# aspect ratio, so a random short-side resize gives the same output size from either input.
SMALL = {"num_frames": 4, "train_scale": [30, 36], "train_crop": 28, "eval_scale": 36, "eval_crop": 28}


def cfg(root: Path, **kw) -> DataConfig:
    base = {"format": "video_list", "root": str(root), "num_classes": 2, "num_workers": 0, **SMALL}
    return DataConfig(**{**base, **kw})


def write_videos(root: Path, names: list[str], num_frames: int = 20) -> None:
    for name in names:
        write_video(root / name, num_frames=num_frames)
    (root / "train_list.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))


def resized_reader(ds, short: int) -> None:
    """Make an uncached dataset read frames as the cache stores them: decoded, then resized to ``short``."""

    def load(sample, indices, index=None):
        frames = read_frames(sample.path, indices).permute(0, 3, 1, 2)
        return F.resize(frames, [short], antialias=True).permute(0, 2, 3, 1).contiguous()

    ds.load_frames = load


@pytest.mark.parametrize("mode", ["disk", "memory"])
def test_cached_clip_equals_decoded_clip(tmp_path: Path, mode: str) -> None:
    write_videos(tmp_path, ["a.webm", "b.mp4", "c.webm"], num_frames=23)
    for extra in ({}, {"sampling": "dense", "frame_stride": 3, "eval_clips": 2, "eval_crops": 3}):
        c = cfg(tmp_path, **extra)
        cached_c = cfg(tmp_path, cache=mode, cache_dir=str(tmp_path / "cache"), **extra)
        # Evaluation: the cache holds exactly what the eval resize makes (same kernel), and resizing
        # that to the same size is a no-op in torchvision: bit-identical, no tolerance.
        plain, cached = build_dataset(c, "train", train=False), build_dataset(cached_c, "train", train=False)
        for i in range(3):
            assert torch.equal(plain[i]["clip"], cached[i]["clip"])
        # Training, after the same resize: bit-identical (same indices, same transform seed).
        plain, cached = build_dataset(c, "train", train=True), build_dataset(cached_c, "train", train=True)
        resized_reader(plain, cache_short_side(cached.cfg))
        for key in [(0, 0), (1, 3), (2, 7)]:
            assert torch.equal(plain[key]["clip"], cached[key]["clip"])


def test_cached_training_clip_close_to_uncached_clip(tmp_path: Path) -> None:
    """Against the plain pipeline a training clip is resized twice (48 -> 36 when cached, then to the
    random scale) instead of once (48 -> scale), and its crop window is rounded to whole pixels of a
    different source: the values differ by resampling and a sub-pixel shift. Checked: the mean |diff| is
    below the clip's own difference from itself shifted one pixel (measured: 1.1-4.0 grey levels against
    3.7-8.1), so the crop is the same; the frame indices and transform seed are checked exactly in
    test_cached_clip_equals_decoded_clip."""
    write_videos(tmp_path, ["a.webm", "b.mp4"], num_frames=40)
    plain = build_dataset(cfg(tmp_path), "train", train=True)
    cached = build_dataset(cfg(tmp_path, cache="memory"), "train", train=True)
    for key in [(i, epoch) for i in range(2) for epoch in range(8)]:
        a, b = plain[key]["clip"], cached[key]["clip"]
        assert a.shape == b.shape == (3, 4, 28, 28)
        one_pixel = (a[..., 1:] - a[..., :-1]).abs().mean()
        assert (a - b).abs().mean() < one_pixel, (key, (a - b).abs().mean(), one_pixel)


def test_trainer_ships_uint8_clips_and_normalises_them(tmp_path: Path) -> None:
    """The Trainer's loader carries uint8 clips from the cache (a quarter of the bytes of float);
    train_step normalises each batch to exactly the float clips the dataset gives direct users."""
    from torch import nn

    from sevnet.engine import Trainer
    from sevnet.engine.config import ExperimentConfig, TrainConfig

    write_videos(tmp_path, ["a.webm", "b.mp4", "c.webm", "d.mp4"])
    c = cfg(tmp_path, cache="memory")
    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return self.fc(x.mean((1, 2, 3, 4)).unsqueeze(1))

    train = TrainConfig(out_dir=str(tmp_path / "run"), progress=False, batch_size=2, epochs=1, device="cpu")
    ds = build_dataset(c, "train", train=True)
    trainer = Trainer(ExperimentConfig(data=c, train=train), model=Probe(), train_set=ds)
    batch = next(iter(trainer.loader))
    assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape == (2, 3, 4, 28, 28)
    trainer.train_step(batch)
    ds.uint8_clips = False  # as evaluation, predict and tests use a dataset
    want = torch.stack([ds[(i, 0)]["clip"] for i in batch["index"].tolist()])
    assert seen[0].dtype == torch.float32 and torch.equal(seen[0], want)


def test_cache_build_bar_follows_train_progress(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from torch import nn

    from sevnet.engine import Trainer
    from sevnet.engine.config import ExperimentConfig, TrainConfig

    write_videos(tmp_path, ["a.webm", "b.mp4"])
    for progress in (False, True):
        train = TrainConfig(out_dir=str(tmp_path / f"run{progress}"), progress=progress, batch_size=2, epochs=1,
                            device="cpu")  # fmt: skip
        Trainer(ExperimentConfig(data=cfg(tmp_path, cache="memory"), train=train), model=nn.Linear(1, 2))
        captured = capfd.readouterr()  # a bar on a terminal (stderr); plain lines elsewhere (stdout)
        assert ("caching train frames" in captured.out + captured.err) == progress


def test_frames_and_indices_match_read_frames(tmp_path: Path) -> None:
    write_videos(tmp_path, ["a.webm", "v.mkv"], num_frames=30)
    c = cfg(tmp_path, cache="memory", train_scale=[48, 48], eval_scale=48)  # no resize: exact frames
    cache = build_dataset(c, "train", train=True).cache
    assert cache.num_frames(0) == 30 and (cache.heights[0], cache.widths[0]) == (48, 64)
    wanted = [0, 5, 5, 17, 29, 35]  # repeats, and past the end (the last frame, as read_frames)
    got = cache.frames(0, wanted)
    assert torch.equal(got, read_frames(tmp_path / "a.webm", wanted))
    assert [decode_index(f) for f in got.numpy()] == [0, 5, 5, 17, 29, 29]


def test_never_upscales(tmp_path: Path) -> None:
    write_videos(tmp_path, ["a.webm"])
    cache = build_dataset(cfg(tmp_path, cache="memory", train_scale=[60, 80], eval_scale=72), "train", True).cache
    assert (cache.heights[0], cache.widths[0]) == (48, 64)  # short side 48 < 80: kept as decoded


def test_disk_cache_reused_and_rebuilt_on_change(tmp_path: Path) -> None:
    write_videos(tmp_path, ["a.webm", "b.webm"])
    store = tmp_path / "cache"
    c = cfg(tmp_path, cache="disk", cache_dir=str(store))
    first = build_dataset(c, "train", train=True).cache
    assert not first.reused
    again = build_dataset(cfg(tmp_path, cache="disk", cache_dir=str(store), train_crop=24, flip=True), "train", False)
    assert again.cache.reused and again.cache.folder == first.folder  # crop/flip do not change stored frames
    # A setting that changes the stored frames: a new cache, the old one removed.
    scaled = build_dataset(cfg(tmp_path, cache="disk", cache_dir=str(store), eval_scale=40), "train", True).cache
    assert not scaled.reused and scaled.folder != first.folder and not first.folder.exists()
    assert (scaled.heights[0], scaled.widths[0]) == (40, 53)
    # A changed file (size, mtime): rebuilt, and the new content is what is read.
    rebuilt = build_dataset(c, "train", train=True).cache
    assert not rebuilt.reused
    write_video(tmp_path / "b.webm", num_frames=12)
    changed = build_dataset(c, "train", train=True).cache
    assert not changed.reused and changed.folder != rebuilt.folder and changed.num_frames(1) == 12
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == [changed.folder.name]


def test_bad_files_skipped_and_counted_with_two_workers(tmp_path: Path) -> None:
    write_video(tmp_path / "ok1.webm", num_frames=12)
    write_video(tmp_path / "ok2.mp4", num_frames=3)  # shorter than the clip
    truncate(write_video(tmp_path / "trunc.mp4", num_frames=30), keep=0.05)
    (tmp_path / "empty.webm").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    names = ["ok1.webm", "trunc.mp4", "empty.webm", "missing.mp4", "text.mp4", "ok2.mp4"]
    (tmp_path / "train_list.txt").write_text("".join(f"{n} {i % 2}\n" for i, n in enumerate(names)))
    plain_c = cfg(tmp_path, num_workers=2)
    plain = build_dataset(plain_c, "train", train=False)
    for mode in ("disk", "memory"):
        c = cfg(tmp_path, cache=mode, cache_dir=str(tmp_path / "cache"), num_workers=2)  # built by 2 workers
        cached = build_dataset(c, "train", train=False)
        assert sorted(cached.cache.errors) == [1, 2, 3, 4]
        for i in range(len(names)):  # same item, or the same (path, reason) error, as without the cache
            a, b = plain[i], cached[i]
            assert a.get("error") == b.get("error")
            assert ("clip" in a) == ("clip" in b) and ("clip" not in a or torch.equal(a["clip"], b["clip"]))
        counter, batches = SkipCounter(max_fraction=0.9, min_seen=1), []
        for batch in build_loader(cached, batch_size=2, train=False, cfg_data=c):  # 2 loader workers
            counter.update(batch)
            batches.append(batch)
        skipped = sorted(Path(p).name for p, _ in counter.skipped)
        assert skipped == ["empty.webm", "missing.mp4", "text.mp4", "trunc.mp4"]
        assert counter.seen == 6 and counter.num_skipped == 4
        good = torch.cat([b["index"] for b in batches if b["clip"] is not None]).tolist()
        assert sorted(good) == [0, 5]
        ref = {i: plain[i]["clip"] for i in good}
        for b in batches:
            for j, i in enumerate(b["index"].tolist()):
                assert torch.equal(b["clip"][j], ref[i])


def test_frame_folders_cached(tmp_path: Path) -> None:
    for i in range(2):
        write_frame_folder(tmp_path / "frames" / str(i), num_frames=10)
    (tmp_path / "train_list.txt").write_text("frames/0 10 0\nframes/1 10 1\n")
    c = cfg(tmp_path, format="frame_list")
    plain = build_dataset(c, "train", train=False)
    cached = build_dataset(cfg(tmp_path, format="frame_list", cache="memory", num_workers=2), "train", train=False)
    for i in range(2):
        assert torch.equal(plain[i]["clip"], cached[i]["clip"])


def test_disk_cache_pickles_without_frames(tmp_path: Path) -> None:
    write_videos(tmp_path, ["a.webm"])
    cache = build_dataset(cfg(tmp_path, cache="disk", cache_dir=str(tmp_path / "c")), "train", True).cache
    clip = cache.frames(0, [1, 2])
    copy = pickle.loads(pickle.dumps(cache))  # what a spawned worker gets: the path, not the frames
    assert copy._data is None and torch.equal(copy.frames(0, [1, 2]), clip)


def test_run_cache_dir_for_the_trainer(tmp_path: Path) -> None:
    from sevnet.data.cache import with_run_cache_dir
    from sevnet.engine.config import load_config

    data = load_config(None, ["data.cache=disk"]).data
    out = with_run_cache_dir(data, tmp_path / "run")
    assert out.cache_dir == str(tmp_path / "run" / "cache") and data.cache_dir == ""  # the input is unchanged
    assert with_run_cache_dir(DataConfig(cache="disk", cache_dir="/x"), tmp_path).cache_dir == "/x"  # set: kept
    assert with_run_cache_dir(DataConfig(cache="memory"), tmp_path).cache_dir == ""  # no folder needed
    assert with_run_cache_dir(DataConfig(cache="disk"), tmp_path).cache_dir == str(tmp_path / "cache")


def test_cache_config_values() -> None:
    assert to_data_config({"cache": False}).cache == "off"  # YAML 1.1: a bare `off` is false
    assert to_data_config({"cache": "False"}).cache == "off"
    with pytest.raises(ValueError, match=r"data\.cache: invalid value 'ram'; valid values: off, memory, disk"):
        to_data_config({"cache": "ram"})
    with pytest.raises(ValueError, match=r"data\.sampling: invalid value 'sparse'; valid values: segment, dense"):
        DataConfig(sampling="sparse")  # however a DataConfig is made, it is checked when it is made
    assert DataConfig(format="folder").frame_template == "sorted"  # and resolved


class _Niceness(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        import os

        return {"clip": torch.zeros(1), "target": torch.tensor(os.nice(0)), "index": i}


def test_loader_workers_run_at_the_configured_niceness() -> None:
    """data.worker_nice: loader workers lower their priority; the main process keeps its own."""
    import os

    from sevnet.data import build_loader

    base = os.nice(0)
    for nice in (0, 7):
        cfg = DataConfig(num_workers=1, worker_nice=nice)
        batch = next(iter(build_loader(_Niceness(), 2, train=False, cfg_data=cfg)))
        assert batch["target"].tolist() == [min(19, base + nice)] * 2
    assert os.nice(0) == base
    with pytest.raises(ConfigError, match="worker_nice"):
        DataConfig(worker_nice=25)


def test_frame_images_rewritten_in_place_rebuild_the_cache(tmp_path: Path) -> None:
    """Overwriting a frame folder's images (same names) leaves the folder's mtime as it was: the key
    follows each image's own size and mtime, so the new frames are cached and read, not the old ones."""
    folder = write_frame_folder(tmp_path / "frames" / "0", num_frames=10)
    (tmp_path / "train_list.txt").write_text("frames/0 10 0\n")
    c = cfg(tmp_path, format="frame_list", cache="disk", cache_dir=str(tmp_path / "cache"))
    first = build_dataset(c, "train", train=False)
    assert float(first.cache.frames(0, [0]).float().mean()) < 200
    stat = folder.stat()
    for image in folder.iterdir():
        Image.new("RGB", (64, 48), (255, 255, 255)).save(image, quality=95)
    os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the folder looks untouched
    again = build_dataset(c, "train", train=False)
    assert not again.cache.reused and again.cache.folder != first.cache.folder
    assert float(again.cache.frames(0, [0, 5]).float().mean()) > 250


@pytest.mark.parametrize("damage", ["truncated frames.u8", "garbage index.npz", "garbage meta.json", "rewritten"])
def test_a_damaged_disk_cache_is_named_and_rebuilt_never_read(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_videos(tmp_path, ["a.webm", "b.mp4", "c.webm"])
    c = cfg(tmp_path, cache="disk", cache_dir=str(tmp_path / "cache"))
    plain = build_dataset(cfg(tmp_path), "train", train=False)
    built = build_dataset(c, "train", train=False).cache
    name = damage.split()[-1] if damage != "rewritten" else "frames.u8"
    target = built.folder / name
    if damage == "truncated frames.u8":
        truncate(target, keep=1 / 3)
    elif damage == "rewritten":  # same size, other bytes
        target.write_bytes(bytes(target.stat().st_size))
    else:
        target.write_bytes(b"\x93NUMPY garbage" * 10)
    with caplog.at_level(logging.WARNING, logger="sevnet.data.cache"):
        ds = build_dataset(c, "train", train=False)
    assert not ds.cache.reused and not ds.cache.errors
    assert f"{built.folder}/{name}" in caplog.text and "rebuilding" in caplog.text
    for i in range(3):  # every video read from the rebuilt cache, none blamed
        assert torch.equal(ds[i]["clip"], plain[i]["clip"])
    # A cache file cut short while a run reads it: an error naming it, not a skipped video.
    truncate(ds.cache.folder / "frames.u8", keep=0.5)
    ds.cache = pickle.loads(pickle.dumps(ds.cache))  # a worker's copy maps the file anew
    with pytest.raises(CacheDamaged, match=r"frames\.u8: truncated while in use"):
        ds[2]

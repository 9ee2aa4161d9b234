"""Issue 13, untrusted data: sample paths confined to data.root, a resolution limit, bad-file
messages that name the file, skipped and partially decoded samples named in the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from _videos import write_video

from sevnet.data import DataConfig, build_dataset
from sevnet.data.annotations import AnnotationError

SMALL = {"num_frames": 4, "train_scale": [32, 32], "train_crop": 32, "eval_scale": 32, "eval_crop": 32}


def cfg(root: Path, fmt: str, **kw: object) -> DataConfig:
    return DataConfig(format=fmt, root=str(root), **{"num_workers": 0, **SMALL, **kw})


# --- item 6: annotation ids cannot escape data.root ---------------------------------------------
@pytest.mark.parametrize("bad", ["../outside/evil.mp4", "ABSOLUTE"])
def test_annotation_ids_outside_root_are_refused_with_file_and_line(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "data"
    secret = write_video(tmp_path / "outside" / "evil.mp4", num_frames=6)
    write_video(root / "ok.mp4", num_frames=6)
    bad = str(secret) if bad == "ABSOLUTE" else bad
    (root / "train_list.txt").write_text(f"ok.mp4 0\n{bad} 1\n")
    with pytest.raises(AnnotationError, match=r"train_list.txt:2: sample path .*evil.mp4 is outside data.root"):
        build_dataset(cfg(root, "video_list", num_classes=2), "train", train=True)
    ds = build_dataset(cfg(root, "video_list", num_classes=2, allow_outside_root=True), "train", train=True)
    assert [s.path.name for s in ds.samples] == ["ok.mp4", "evil.mp4"]  # explicitly allowed: read


def test_ssv2_ids_and_folder_split_file_rows_are_confined(tmp_path: Path) -> None:
    import json

    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({"Pushing something": "0"}))
    entries = [{"id": "../../etc/passwd", "template": "Pushing [something]"}]
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(entries))
    with pytest.raises(AnnotationError, match=r"v2-train.json: entry 1: sample path .* is outside data.root"):
        build_dataset(cfg(tmp_path, "ssv2"), "train", train=True)
    (tmp_path / "split.csv").write_text("path,class,split\n/etc/hostname,a,train\n")
    with pytest.raises(AnnotationError, match=r"split.csv \(path '/etc/hostname'\): sample path"):
        build_dataset(cfg(tmp_path, "folder", split_file="split.csv"), "train", train=True)

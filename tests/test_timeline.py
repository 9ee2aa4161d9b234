"""Timelines: windows sampled as in training, one decoding pass through a bounded ring of frames,
segments that find scene changes, and the CLI's JSON / CSV / plot / overlay outputs."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
from _scenes import COLOURS, ColourStub, meta_for, scenes_video, tiny_checkpoint
from _videos import truncate

import sevnet
from sevnet.cli import main
from sevnet.data.video import read_frames
from sevnet.deploy.predictor import ClipSpec, Predictor
from sevnet.deploy.timeline import make_segments, plan_windows, run_timeline, smooth_scores

SCENES = (4.0, 3.0, 5.0)  # seconds of red, green, blue
BOUNDARIES = (4.0, 7.0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenes_video(tmp_path_factory.mktemp("scenes") / "scenes.mp4", SCENES, fps=10)


def _stub(**meta_options: object) -> Predictor:
    return Predictor.from_model(ColourStub(), meta_for(**meta_options))


def test_windows_cover_the_video_and_sample_like_training() -> None:
    spec = ClipSpec.from_meta(meta_for(num_frames=8))
    plans = plan_windows(num_frames=125, fps=10, window=2.0, stride=1.0, spec=spec)
    assert [p.start for p in plans][:3] == [0, 10, 20] and plans[-1].end == 125  # the tail window ends at the end
    assert all(p.end - p.start == 20 for p in plans)
    for p in plans:  # segment sampling: one frame from the middle of each eighth of the window
        assert list(p.indices) == [p.start + int((k + 0.5) * 2.5) for k in range(8)]
    dense = ClipSpec.from_meta(meta_for(num_frames=4, sampling="dense"))  # frame_stride 2: a span of 7 frames
    (first, *_) = plan_windows(100, 10, window=2.0, stride=1.0, spec=dense)
    assert list(first.indices) == [6, 8, 10, 12]  # centred in the window, as evaluation centres a clip
    (short,) = plan_windows(5, 10, window=2.0, stride=1.0, spec=spec)  # shorter than one window
    assert (short.start, short.end) == (0, 5) and max(short.indices) == 4
    with pytest.raises(ValueError, match="must be > 0"):
        plan_windows(100, 10, window=0, stride=1, spec=spec)


@pytest.mark.parametrize(("window", "stride"), [(1.0, 0.5), (2.0, 1.0), (1.5, 0.3)])
def test_segments_match_scene_boundaries_within_one_stride(scenes: Path, window: float, stride: float) -> None:
    tl = _stub().timeline(scenes, window=window, stride=stride)
    assert [s.label for s in tl.segments] == list(COLOURS)
    assert tl.segments[0].start == 0 and tl.segments[-1].end == pytest.approx(sum(SCENES))
    for left, right, boundary in zip(tl.segments, tl.segments[1:], BOUNDARIES):
        assert left.end == right.start
        assert abs(left.end - boundary) <= stride, (left, right, boundary)
    assert all(s.score > 0.8 for s in tl.segments)
    assert tl.starts[0] == 0 and tl.ends[-1] == pytest.approx(sum(SCENES))
    np.testing.assert_allclose(np.diff(tl.starts)[:-1], stride, atol=0.051)  # frame-rounded stride


def test_window_scores_are_those_of_reading_the_window_frames(scenes: Path, tmp_path: Path) -> None:
    """The ring buffer hands every window exactly the frames (and preprocessing) of a direct read."""
    predictor = sevnet.load(tiny_checkpoint(tmp_path / "m.safetensors"))
    tl = predictor.timeline(scenes, window=1.2, stride=0.4, smooth=1)
    plans = plan_windows(120, 10, 1.2, 0.4, predictor.clip_spec)
    assert len(plans) == len(tl.scores)
    transform = predictor._dataset(1).transform
    for plan, scores in [*list(zip(plans, tl.scores))[::4], (plans[-1], tl.scores[-1])]:
        clip = transform(read_frames(scenes, list(plan.indices))).numpy()
        np.testing.assert_allclose(predictor.probabilities(clip)[0], scores, atol=1e-6)


def _peak_bytes(predictor: Predictor, video: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        tl = run_timeline(predictor, video, window=1.0, stride=0.5)
        return tracemalloc.get_traced_memory()[1], tl.ring_frames
    finally:
        tracemalloc.stop()


def test_ring_buffer_keeps_memory_flat_on_a_long_video(tmp_path: Path) -> None:
    predictor = _stub(crop=48)
    short = scenes_video(tmp_path / "short.mp4", (5.0, 5.0), fps=30, size=(72, 96))  # 300 frames
    long = scenes_video(tmp_path / "long.mp4", (10.0,) * 6, fps=30, size=(72, 96))  # 1800 frames
    _peak_bytes(predictor, short)  # warm-up (lazy imports)
    peak_short, ring_short = _peak_bytes(predictor, short)
    peak_long, ring_long = _peak_bytes(predictor, long)
    assert ring_short == ring_long <= 2 * 8 * 2  # frames, whatever the length
    # 6x the frames; holding them would add 1500 x 72 x 96 x 3 = 31 MB (10 MB resized to 48 x 48)
    assert peak_long - peak_short < 2_000_000, (peak_short, peak_long)


def test_smoothing_and_segment_rules() -> None:
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    np.testing.assert_allclose(smooth_scores(scores, 3)[1], scores[:3].mean(0))
    np.testing.assert_allclose(smooth_scores(scores, 3)[0], scores[:2].mean(0))  # the ends average what exists
    starts = np.arange(7.0)
    ends = starts + 1
    names = ["a", "b"]
    raw = make_segments(names, starts, ends, scores, 7.0, threshold=0.0, min_duration=0.0)
    assert [(s.label, s.start, s.end) for s in raw] == [("a", 0, 2), ("b", 2, 3), ("a", 3, 5), ("b", 5, 7)]
    merged = make_segments(names, starts, ends, scores, 7.0, threshold=0.0, min_duration=1.5)
    assert [(s.label, s.start, s.end) for s in merged] == [("a", 0, 5), ("b", 5, 7)]  # the 1 s blip absorbed
    assert merged[0].score == pytest.approx(np.mean([0.9, 0.8, 0.2, 0.9, 0.9]))
    gaps = make_segments(names, starts, ends, scores, 7.0, threshold=0.85, min_duration=0.0)
    assert [(s.label, s.start, s.end) for s in gaps] == [("a", 0, 1), ("a", 3, 5), ("b", 5, 7)]
    multi = make_segments(names, starts, ends, scores, 7.0, threshold=0.5, min_duration=0.0, multi_label=True)
    assert {(s.label, s.start, s.end) for s in multi} == {("a", 0, 2), ("a", 3, 5), ("b", 2, 3), ("b", 5, 7)}


def test_truncated_file_still_gets_a_timeline(tmp_path: Path) -> None:
    video = truncate(scenes_video(tmp_path / "cut.mkv", (3.0, 3.0), fps=10), keep=0.6)  # streamable: opens when cut
    tl = _stub().timeline(video, window=1.0, stride=0.5)
    assert tl.segments and tl.segments[0].label == "red"


def test_cli_timeline_end_to_end_with_a_real_sevnet(scenes: Path, tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    out = {k: tmp_path / f"t.{k}" for k in ("csv", "png", "mp4")}
    args = ["predict", str(scenes), "--checkpoint", str(ckpt), "--window", "1", "--stride", "0.5", "--topk", "2"]
    extra = ["--json", "--csv", str(out["csv"]), "--plot", str(out["png"]), "--overlay", str(out["mp4"])]
    assert main(args + extra) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert set(result) == {"video", "duration", "windows", "segments"} and result["duration"] == 12.0
    assert len(result["windows"]) == 23 and result["windows"][1]["start"] == 0.5 and result["windows"][1]["end"] == 1.5
    assert all(set(w) == {"start", "end", "top"} and len(w["top"]) == 2 for w in result["windows"])
    assert all(set(e) == {"label", "score"} for w in result["windows"] for e in w["top"])
    assert result["segments"] and all(set(s) == {"label", "start", "end", "score"} for s in result["segments"])
    rows = list(csv.DictReader(out["csv"].open()))
    assert sum(r["kind"] == "window" for r in rows) == 46 and sum(r["kind"] == "segment" for r in rows) == len(
        result["segments"]
    )
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    with av.open(str(out["mp4"])) as c, av.open(str(scenes)) as s:
        drawn = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        source = [f.to_ndarray(format="rgb24") for f in s.decode(video=0)]
    assert len(drawn) == len(source) == 120
    assert drawn[50][4:12, 4:30].mean() < source[50][4:12, 4:30].mean() - 40  # the label box, top-left
    assert np.abs(drawn[50][30:].astype(int) - source[50][30:]).mean() < 8  # the rest of the frame unchanged
    assert main(args) == 0  # the table
    table = capsys.readouterr().out
    assert "23 windows" in table and "segments (" in table and "top-2" in table
    assert main([*args[:-1], "5"]) == 0  # --topk 5 of 3 classes: the header says what it shows
    assert "top-3" in capsys.readouterr().out


def test_a_timeline_of_frames_in_memory_says_it_needs_a_file() -> None:
    with pytest.raises(TypeError, match=r"a timeline reads a video file .*got a numpy\.ndarray"):
        _stub().timeline(np.zeros((20, 48, 64, 3), np.uint8), window=1.0)


def test_cli_timeline_arguments(scenes: Path, tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    base = ["predict", str(scenes), "--checkpoint", str(ckpt)]
    for bad, message in [
        (["--window", "0"], "argument --window: must be a number of seconds > 0"),
        (["--window", "1", "--stride", "-1"], "argument --stride: must be a number of seconds > 0"),
        (["--window", "1", "--smooth", "0"], "argument --smooth: must be an integer >= 1"),
        (["--clips", "0"], "argument --clips: must be an integer >= 1, got '0'"),
    ]:
        with pytest.raises(SystemExit):
            main(base + bad)
        assert message in capsys.readouterr().err
    assert main([*base, "--plot", "x.png"]) == 2
    assert "--plot needs --window" in capsys.readouterr().err
    assert main([*base, "--window", "1", "--clips", "2"]) == 2
    assert "--clips does not apply with --window" in capsys.readouterr().err


def test_cli_timelines_to_json_lines_with_resume(scenes: Path, tmp_path: Path, capsys) -> None:
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = tmp_path / "timelines.jsonl"
    args = ["predict", str(scenes), str(broken), "--checkpoint", str(ckpt), "--window", "2", "--out", str(out)]
    assert main([*args, "--plot", str(tmp_path / "p.png")]) == 1
    first, error = (json.loads(line) for line in out.read_text().splitlines())
    assert set(first) == {"video", "duration", "windows", "segments"} and "broken.mp4" in error["error"]
    assert (tmp_path / "p-scenes.png").is_file()  # one plot per video when there are several
    capsys.readouterr()
    assert main(args) == 1
    assert "skipped 1 already in" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]  # the error retried, the timeline not:
    assert len(lines) == 2 and {r["video"] for r in lines} == {str(scenes), str(broken)}  # one record each


def test_decoder_skips_unused_frames_but_never_a_wanted_one(scenes: Path) -> None:
    """H.264: frames no window samples and no frame refers to (B-frames) are not decoded at all."""
    from sevnet.video import decoded_frames

    every = [i for i, _ in decoded_frames(scenes)]
    assert every == sorted(every) and len(every) == 120
    kept = [i for i, _ in decoded_frames(scenes, keep=lambda i: i % 10 == 0)]
    assert set(range(0, 120, 10)) <= set(kept) and len(kept) < 120


def test_timeline_refuses_a_frame_folder(tmp_path: Path) -> None:
    from sevnet.data.video import DecodeError

    with pytest.raises(DecodeError, match="needs a video file"):
        _stub().timeline(tmp_path, window=1.0)

"""``sevnet.video``, the one decoder: on real files of every container the tests write, its frames and
indices are those the bar code of each frame says (``_videos.pattern_frame``), and the dataset reader,
the frame cache and ``sevnet data check`` give the same frames and verdicts through it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _videos import decode_index, pattern_frame, truncate, write_video

from sevnet.data.cache import _decode_all
from sevnet.data.check import inspect_video
from sevnet.data.video import read_frames
from sevnet.video import (
    DecodeError,
    decoded_frames,
    fill_forward,
    frame_timing,
    open_video,
    probe_video,
    truncation_reason,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "sevnet"
N, FPS = 40, 12
CONTAINERS = [".mp4", ".webm", ".avi", ".mkv", "mjpeg.avi"]  # H.264, VP9, MPEG-4 part 2, H.264, MJPEG


def write_mjpeg(path: Path, num_frames: int = N, fps: int = FPS) -> Path:
    """An intra-only (MJPEG) video: the codec whose unwanted packets are never decoded."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        stream.options = {"q:v": "2"}
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module", params=CONTAINERS)
def video(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    if request.param.startswith("mjpeg"):
        return write_mjpeg(folder / request.param)
    return write_video(folder / f"v{request.param}", num_frames=N, fps=FPS)


def rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def test_frames_and_indices_are_those_the_writer_encoded(video: Path) -> None:
    info = probe_video(video)
    assert (info.num_frames, info.fps, info.width, info.height, info.partial) == (N, FPS, 64, 48, None)
    frames = [(index, rgb(frame)) for index, frame in decoded_frames(video)]
    assert [index for index, _ in frames] == list(range(N))  # the timestamp rule, in presentation order
    assert [decode_index(image) for _, image in frames] == list(range(N))  # and the frame's own bar code
    for index, image in frames[::13]:  # the pixels, up to lossy compression, are the ones encoded
        assert np.abs(image.astype(int) - pattern_frame(index)).mean() < 10


def test_reader_and_cache_give_the_decoders_frames(video: Path) -> None:
    decoded = {index: rgb(frame) for index, frame in decoded_frames(video)}
    for wanted in ([0, 1, 2], [33, 34, 39], [21, 3, 21, 37], [38], [5, 39, 45]):
        clip = read_frames(video, wanted).numpy()  # a seek, then fill-forward (45: past the end, the last frame)
        assert [decode_index(image) for image in clip] == [min(i, N - 1) for i in wanted]
        for i, image in zip(wanted, clip):
            np.testing.assert_array_equal(image, decoded[min(i, N - 1)])
    cached = np.stack(list(_decode_all(video, N + 2)))  # the cache's one pass from the start; 2 past the end
    np.testing.assert_array_equal(cached[:N], np.stack([decoded[i] for i in range(N)]))
    np.testing.assert_array_equal(cached[N:], np.stack([decoded[N - 1]] * 2))


def test_unwanted_frames_may_be_skipped_but_never_a_wanted_one(video: Path) -> None:
    kept = {index: rgb(frame) for index, frame in decoded_frames(video, keep=lambda i: i % 10 == 0)}
    assert set(range(0, N, 10)) <= set(kept)
    assert [decode_index(kept[i]) for i in range(0, N, 10)] == list(range(0, N, 10))
    if video.name.startswith("mjpeg"):  # intra-only: the packets nobody wants are not decoded at all
        assert sorted(kept) == list(range(0, N, 10))


def test_variable_frame_rate_indices_and_fill_forward(tmp_path: Path) -> None:
    pts = [0, 1, 2, 5, 6, 7, 10, 11]  # gaps at 3-4 and 8-9
    path = write_video(tmp_path / "vfr.mkv", num_frames=8, pts=pts)
    assert [index for index, _ in decoded_frames(path)] == pts  # frames keep their time, not their count
    got = [(decode_index(rgb(f)), filled) for f, filled in fill_forward(decoded_frames(path), [0, 3, 6, 11, 14], "v")]
    assert got == [(0, [0]), (3, [3]), (4, [6]), (7, [11]), (7, [14])]  # a gap: the next frame; the end: the last


def test_fill_forward_rule() -> None:
    frames = [(0, "a"), (1, "b"), (4, "c")]
    assert list(fill_forward(frames, [0, 2, 3, 4, 6], "v")) == [("a", [0]), ("c", [2, 3, 4]), ("c", [6])]
    assert list(fill_forward(iter(frames), [1], "v")) == [("b", [1])]  # stops as soon as all are filled
    with pytest.raises(DecodeError, match="v: no decodable frame at or after index 5"):
        list(fill_forward(frames, [5], "v"))


def test_timestamp_rule_and_seek_target(video: Path) -> None:
    with open_video(video) as container:
        timing = frame_timing(container.streams.video[0])
    assert timing.fps == FPS
    for index in (0, 1, 17, N - 1):
        assert timing.index(timing.timestamp(index)) == index


def test_one_truncation_rule_and_its_tolerances() -> None:
    assert truncation_reason(98, 100, 8.0, 8.0, 0.08) is None  # 2 % of the frames: over-reported, not cut
    assert truncation_reason(97, 100, 8.0, 8.0, 0.08) == "97 of the 100 frames the container lists are present"
    assert truncation_reason(10, 0, 9.6, 10.0, 0.04) is None  # 5 % of the duration
    cut = truncation_reason(10, 0, 9.4, 10.0, 0.04, verb="decode")
    assert cut == "frames cover 9.40 s of the 10.00 s the container claims (10 frames decode)"
    assert truncation_reason(5, 0, 0.18, 0.25, 0.04) is None  # 2 frames on a short video


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_probe_and_data_check_agree_on_a_cut_off_file(tmp_path: Path, suffix: str) -> None:
    whole = write_video(tmp_path / f"whole{suffix}", num_frames=N, fps=FPS)
    cut = truncate(write_video(tmp_path / f"cut{suffix}", num_frames=N, fps=FPS), keep=0.6)
    assert probe_video(whole).partial is None and inspect_video(whole, 1, 10**9).status == "ok"
    try:
        partial = probe_video(cut).partial
    except DecodeError:  # an MP4 cut before its index (moov at the end) does not open at all
        assert inspect_video(cut, 1, 10**9).status == "unreadable"
        return
    assert partial is not None and partial.startswith("truncated: ")
    assert inspect_video(cut, 1, 10**9).status == "truncated"
    problems: list[str] = []
    frames = [index for index, _ in decoded_frames(cut, problems=problems)]
    assert 0 < len(frames) < N and frames == sorted(frames)


def test_bad_files_are_decode_errors_naming_the_file(tmp_path: Path) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 50)
    (tmp_path / "empty.mp4").write_bytes(b"")
    for path, why in ((text, "cannot open as video"), (tmp_path / "empty.mp4", "empty file"), (tmp_path, "a folder")):
        with pytest.raises(DecodeError, match=f"{re.escape(str(path))}: {why}"):
            list(decoded_frames(path))


def test_the_decoder_is_the_bottom_layer_and_no_private_name_crosses_modules() -> None:
    tree = ast.parse((SRC / "video.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith(("sevnet.data", "sevnet.deploy", "sevnet.engine"))}
    code = (
        "import sys, sevnet; before = set(sys.modules); import sevnet.video; print(sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not re.search(r"sevnet\.(data|deploy|engine)", loaded), loaded
    private = re.compile(r"video import _|video\._|import _open|_stream_timing")
    offenders = [f"{p}:{i}" for p in SRC.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
                 if private.search(line)]  # fmt: skip
    assert not offenders, offenders

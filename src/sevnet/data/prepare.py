"""``sevnet data prepare SRC DST --short-side S``: a copy of a dataset that decodes faster.

Decoding 240p VP9 webm on the CPU is what limits video training (issue 22; MMAction2 re-encodes to a
short GOP for the same reason). This module mirrors the tree under SRC into DST, layout unchanged, so
that every config works with ``data.root=DST`` whatever its ``data.format``:

- every video (by extension, ``folder.VIDEO_EXTENSIONS``) is re-encoded with its short side ``S``
  (never upscaled, aspect kept, even width and height), keeping its name and its frame timestamps;
  the codec (``CODECS``, default MJPEG) was chosen by ``benchmarks/loader_bench.py`` (docs/data.md).
  The content is MP4 for ``.mp4``/``.m4v``/``.mov`` names and Matroska for every other name (``.webm``
  included: WebM is a subset of Matroska whose muxer takes no H.264); PyAV opens a file by its content,
  so the parsers' names (SSv2's ``<id>.webm``) still find every file;
- every image of a frame folder is resized the same way and written under its own name, as JPEG
  (PNG stays PNG);
- every other file (annotation lists, label files) is copied as it is. Hidden files are left out.

Each file is written to a hidden temporary name, checked (a video's output must decode to as many
frames as its source did), given its source's modification time and renamed: a file at its final
name with its source's mtime is finished, and a rerun skips it. Files that cannot be read are copied
as they are (training skips them there as it would here) and reported; nothing stops the run.
Work runs in worker processes, one file each at a time (``check.run_isolated``: a decoder that
crashes or hangs costs its file). The report (one row per media file) goes beside DST.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import InputError, NotAFolderError, NotFoundError
from .folder import VIDEO_EXTENSIONS
from .frames import IMAGE_EXTENSIONS, natural_key
from .video import decoder_threads

# The candidates benchmarks/loader_bench.py measures: name -> (encoder, options, pixel format).
# mjpeg is the default, the measured winner (docs/data.md, "Preparing a dataset"): every frame is a JPEG
# of its own, so a clip decodes only its 16 frames (``sevnet.video.decoded_frames``), where H.264 decodes every frame
# from the keyframe on; it costs about 2.4x the bytes of a released SSv2 webm.
CODECS: dict[str, tuple[str, dict[str, str], str]] = {
    "h264": ("libx264", {"g": "16", "bf": "0", "crf": "23", "preset": "veryfast"}, "yuv420p"),
    "h264-fastdecode": (
        "libx264",
        {"g": "16", "bf": "0", "crf": "23", "preset": "veryfast", "tune": "fastdecode"},
        "yuv420p",
    ),
    "h264-intra": ("libx264", {"g": "1", "bf": "0", "crf": "23", "preset": "veryfast"}, "yuv420p"),
    "mjpeg": ("mjpeg", {"q:v": "4"}, "yuvj420p"),
}
DEFAULT_CODEC = "mjpeg"
# Containers by extension; every other video extension gets Matroska, which PyAV reads by its content,
# whatever the name (AVI is not used: it has no presentation timestamps, and H.264 in it comes back
# shifted by a frame).
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
REPORT_COLUMNS = ("path", "kind", "status", "reason", "frames_in", "frames_out", "size_in", "size_out")
PROBLEMS = ("partial", "unreadable", "crashed")  # statuses the summary lists


@dataclass
class Result:
    """What preparing one file did (picklable: it comes back from a worker process)."""

    path: str = ""  # relative to SRC (POSIX)
    kind: str = "video"  # video | frames
    status: str = "ok"  # ok | done (finished by an earlier run) | partial | unreadable | crashed
    reason: str = ""
    frames_in: int | None = None  # frames (images) decoded from the source
    frames_out: int | None = None  # frames (images) the output holds
    size_in: str = ""  # WxH
    size_out: str = ""


@dataclass
class PrepareReport:
    rows: list[dict[str, Any]]
    report_path: Path
    copied: int = 0  # other files copied (annotations, labels)
    skipped_hidden: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] in PROBLEMS]

    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` (never larger than the source), aspect kept,
    both rounded to even numbers (4:2:0 chroma needs them)."""
    scale = min(1.0, short_side / min(width, height))

    def even(x: float) -> int:
        return max(2, round(x / 2) * 2)

    return even(width * scale), even(height * scale)


def same_mtime(src: Path, dst: Path) -> bool:
    """``dst`` exists and carries ``src``'s modification time: finished by an earlier run."""
    try:
        return dst.stat().st_mtime_ns == src.stat().st_mtime_ns
    except OSError:
        return False


def _finish(tmp: Path, src: Path, dst: Path) -> None:
    """Give ``tmp`` the source's times, then rename it to ``dst`` in one step."""
    st = src.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, dst)


def _tmp_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.prepare-tmp")


def copy_file(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` atomically unless already there; True when it copied."""
    if same_mtime(src, dst) and dst.stat().st_size == src.stat().st_size:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst)
    shutil.copyfile(src, tmp)
    _finish(tmp, src, dst)
    return True


# --- one video (runs in a worker) --------------------------------------------------------------------
def _decoded_frames(container: Any, stream: Any, errors: list[str]) -> Any:
    """Every frame that decodes; a packet that fails is noted in ``errors`` and decoding goes on."""
    import av

    try:
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.FFmpegError as err:
                errors.append(str(err))
    except av.FFmpegError as err:
        errors.append(f"reading stopped: {err}")


def _open_output(path: Path, ext: str, src_stream: Any, size: tuple[int, int], codec: str, threads: int) -> Any:
    import av

    encoder, options, pix_fmt = CODECS[codec]
    out = av.open(str(path), "w", format=_MUXERS.get(ext.lower(), "matroska"))
    rate = src_stream.average_rate or src_stream.guessed_rate or Fraction(25)
    stream = out.add_stream(encoder, rate=rate)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
    stream.codec_context.time_base = src_stream.time_base or Fraction(1, int(rate))
    stream.codec_context.thread_count = threads
    stream.options = dict(options)
    return out, stream


def encode_video(src: Path, tmp: Path, short_side: int, codec: str, threads: int) -> tuple[int, str, str, list[str]]:
    """Re-encode ``src`` into ``tmp``: (frames decoded and written, source WxH, output WxH, decode errors).
    Timestamps are kept, so a variable-frame-rate video keeps its timing."""
    import av
    from av.video.reformatter import VideoReformatter

    errors: list[str] = []
    with av.open(str(src)) as source:
        if not source.streams.video:
            raise ValueError("no video stream")
        in_stream = source.streams.video[0]
        in_stream.thread_type, in_stream.codec_context.thread_count = "AUTO", threads
        width, height = in_stream.codec_context.width, in_stream.codec_context.height
        if not width or not height:
            raise ValueError("no frame size in the header")
        size = scaled_size(width, height, short_side)
        out, stream = _open_output(tmp, src.suffix, in_stream, size, codec, threads)
        count, last_pts, scaler = 0, None, VideoReformatter()  # one swscale context for the file
        with out:
            for frame in _decoded_frames(source, in_stream, errors):
                pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
                pts = pts if last_pts is None or pts > last_pts else last_pts + 1  # encoders need rising pts
                image = scaler.reformat(frame, size[0], size[1], stream.pix_fmt, interpolation="AREA")
                image.pts, image.time_base, last_pts = pts, stream.codec_context.time_base, pts
                out.mux(stream.encode(image))
                count += 1
            out.mux(stream.encode())
    return count, f"{width}x{height}", f"{size[0]}x{size[1]}", errors


def count_decoded(path: Path) -> int:
    """Frames that decode from ``path`` (the check of an output before it is renamed into place)."""
    import av

    errors: list[str] = []
    with av.open(str(path)) as container:
        n = sum(1 for _ in _decoded_frames(container, container.streams.video[0], errors))
    if errors:
        raise ValueError(f"the output does not decode cleanly ({errors[0]})")
    return n


def prepare_video(src: str, dst: str, rel: str, short_side: int, codec: str, threads: int) -> Result:
    """Re-encode one video; an unreadable source is copied as it is and reported."""
    import av

    src_p, dst_p = Path(src), Path(dst)
    dst_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst_p)
    result = Result(rel, "video")
    try:
        count, result.size_in, result.size_out, errors = encode_video(src_p, tmp, short_side, codec, threads)
        if count == 0:
            raise ValueError(f"no frame decodes ({errors[0] if errors else 'no frames'})")
        result.frames_in, result.frames_out = count, count_decoded(tmp)
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        copy_file(src_p, dst_p)
        return Result(rel, "video", "unreadable", f"{err}; copied as it is", size_in=result.size_in)
    if result.frames_out != result.frames_in:  # never seen; kept as it is rather than trained on wrongly
        tmp.unlink()
        copy_file(src_p, dst_p)
        why = f"the output decoded {result.frames_out} frames, the source {result.frames_in}; copied as it is"
        return Result(rel, "video", "unreadable", why, result.frames_in, result.frames_out)
    _finish(tmp, src_p, dst_p)
    if errors:
        result.status = "partial"
        result.reason = f"the source has decoding errors ({errors[0]}); its {count} decodable frames written"
    return result


# --- one frame folder (runs in a worker) ---------------------------------------------------------------
def _resize_image(src: Path, tmp: Path, short_side: int, quality: int) -> tuple[str, str]:
    from PIL import Image

    with Image.open(src) as im:
        im.load()
        fmt = "PNG" if src.suffix.lower() == ".png" else "JPEG"
        size = scaled_size(im.width, im.height, short_side) if min(im.size) > short_side else im.size
        out = im if size == im.size else im.resize(size, Image.Resampling.BILINEAR)
        if fmt == "JPEG" and out.mode not in ("RGB", "L"):
            out = out.convert("RGB")
        out.save(tmp, format=fmt, quality=quality)
        return f"{im.width}x{im.height}", f"{size[0]}x{size[1]}"


def prepare_frames(src: str, dst: str, rel: str, names: list[str], short_side: int, quality: int) -> Result:
    """Resize every image of one frame folder (each written atomically; finished ones skipped); an image
    that does not decode is copied as it is and reported."""
    src_p, dst_p = Path(src), Path(dst)
    dst_p.mkdir(parents=True, exist_ok=True)
    result, bad, written = Result(rel, "frames"), [], 0
    for name in names:
        s, d = src_p / name, dst_p / name
        if same_mtime(s, d):
            written += 1
            continue
        tmp = _tmp_name(d)
        try:
            result.size_in, result.size_out = _resize_image(s, tmp, short_side, quality)
        except (OSError, SyntaxError, ValueError) as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            bad.append(f"{name}: {err}")
            copy_file(s, d)
            written += 1
            continue
        _finish(tmp, s, d)
        written += 1
    result.frames_in, result.frames_out = len(names) - len(bad), written
    if bad:
        result.status = "partial"
        result.reason = f"{len(bad)} of {len(names)} images do not decode, copied as they are (first: {bad[0]})"
    return result


def run_task(kind: str, *args: Any) -> Result:
    """A worker's entry point: one video or one frame folder."""
    return prepare_video(*args) if kind == "video" else prepare_frames(*args)


# --- the whole tree ---------------------------------------------------------------------------------
@dataclass
class Plan:
    """What a run has to do: worker tasks, files finished before, other files to copy."""

    tasks: list[tuple] = field(default_factory=list)  # (kind, *args) for run_task
    done: list[Result] = field(default_factory=list)  # finished by an earlier run
    copies: list[tuple[Path, Path]] = field(default_factory=list)
    hidden: int = 0


def check_paths(src: Path, dst: Path, short_side: int) -> None:
    """Clear errors before any work: SRC must be a folder, DST outside it (and it outside DST)."""
    if not src.exists():
        raise NotFoundError(f"SRC not found: {src}")
    if not src.is_dir():
        raise NotAFolderError(f"SRC is not a folder: {src} (give the dataset's root folder)")
    if short_side < 2:
        raise InputError(f"--short-side must be at least 2 pixels, got {short_side}")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise InputError(f"DST {dst} is inside SRC {src}: choose a folder outside the dataset")
    if d in s.parents:
        raise InputError(f"SRC {src} is inside DST {dst}: choose a DST that does not contain the dataset")
    if dst.exists() and not dst.is_dir():
        raise NotAFolderError(f"DST exists and is not a folder: {dst}")


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def plan_tree(src: Path, dst: Path, short_side: int, codec: str, quality: int, threads: int) -> Plan:
    """Walk SRC (symbolic links followed, each real folder once) and sort every entry into the plan."""
    plan, seen = Plan(), set()
    for folder, dirs, files in os.walk(src, followlinks=True):
        here = Path(folder)
        real = os.path.realpath(here)
        if real in seen:  # a link cycle, or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        plan.hidden += sum(1 for n in dirs + files if n.startswith("."))
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        out = dst / os.path.relpath(here, src)
        images = []
        for name in sorted((f for f in files if not f.startswith(".")), key=natural_key):
            ext = Path(name).suffix.lower()
            if ext in VIDEO_EXTENSIONS:
                rel = _rel(here / name, src)
                if same_mtime(here / name, out / name):
                    plan.done.append(Result(rel, "video", "done"))
                else:
                    plan.tasks.append(("video", str(here / name), str(out / name), rel, short_side, codec, threads))
            elif ext in IMAGE_EXTENSIONS:
                images.append(name)
            else:
                plan.copies.append((here / name, out / name))
        if images:
            rel = _rel(here, src)
            if all(same_mtime(here / n, out / n) for n in images):
                plan.done.append(Result(rel, "frames", "done", frames_in=len(images), frames_out=len(images)))
            else:
                plan.tasks.append(("frames", str(here), str(out), rel, images, short_side, quality))
    return plan


def report_path_for(dst: Path) -> Path:
    """The report beside DST (not in it: the folder format would count it as a stray file)."""
    return dst.parent / f"{dst.name}.prepare.csv"


def check_settings(dst: Path, settings: dict[str, Any]) -> None:
    """Record the settings beside DST (``DST.prepare.json``); a rerun with other settings is an error,
    since it would skip every finished file and leave a mix of the two."""
    path = dst.parent / f"{dst.name}.prepare.json"
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier != settings:
            raise InputError(
                f"{dst} was prepared with {earlier} ({path}); this run asks for {settings}: finished files would "
                "be kept as they are. Choose another DST, or delete it and its .prepare.* files to start again"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings), encoding="utf-8")


def _earlier_rows(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def _done_row(result: Result, earlier: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A file finished by an earlier run keeps that run's row (a problem stays reported), as 'done'
    unless it was a problem."""
    row = dict(earlier.get(result.path) or asdict(result))
    if row.get("status") not in PROBLEMS:
        row["status"], row["reason"] = "done", "finished by an earlier run"
    return row


def prepare_dataset(src: str | Path, dst: str | Path, short_side: int, codec: str = DEFAULT_CODEC,
                    workers: int = 2, quality: int = 90, timeout: float = 600.0,
                    progress: bool = True) -> PrepareReport:  # fmt: skip
    """Mirror SRC into DST with every video re-encoded and every frame image resized (module docstring);
    write the report beside DST and return it."""
    from .check import Finding, run_isolated

    src, dst = Path(src), Path(dst)
    if codec not in CODECS:
        raise InputError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    check_paths(src, dst, short_side)
    check_settings(dst, {"short_side": short_side, "codec": codec, "quality": quality})
    threads = decoder_threads(workers, os.cpu_count() or 1)  # no worker's codecs oversubscribe the cores
    plan = plan_tree(src, dst, short_side, codec, quality, threads)
    copied = sum(copy_file(s, d) for s, d in plan.copies)
    report_path = report_path_for(dst)
    earlier = _earlier_rows(report_path)
    results = run_isolated(run_task, plan.tasks, workers, timeout, progress, desc="preparing")
    rows = [_done_row(r, earlier) for r in plan.done]
    for task, result in zip(plan.tasks, results):
        if isinstance(result, Finding):  # the worker crashed, hung or failed on this file: keep the file as it is
            if task[0] == "video":
                copy_file(Path(task[1]), Path(task[2]))
            status = "crashed" if result.status == "crashed" else "unreadable"
            result = Result(task[3], task[0], status, result.reason)
        rows.append(asdict(result))
    rows.sort(key=lambda r: natural_key(r["path"]))
    dst.mkdir(parents=True, exist_ok=True)
    with report_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return PrepareReport(rows, report_path, copied, plan.hidden)

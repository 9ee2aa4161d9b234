"""Shipped configs: package data with names. ``sevnet train folder_sevnet_xs`` must work from any
folder after ``pip install``, so the wheel is built and installed here and every config is loaded by
name in a process that sees only the installed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sevnet import cli
from sevnet.engine.config import load_config, resolve_config, shipped_configs

REPO = Path(__file__).resolve().parents[1]


def test_a_config_argument_is_a_path_first_then_a_shipped_name(tmp_path: Path, monkeypatch) -> None:
    shipped = shipped_configs()
    assert {"folder_sevnet_xs", "ssv2_sevnet_s", "k400_sevnet_m"} <= set(shipped)
    monkeypatch.chdir(tmp_path)  # not the checkout: names, not relative paths, find them
    assert resolve_config("ssv2_sevnet_s") == shipped["ssv2_sevnet_s"]
    assert resolve_config("ssv2_sevnet_s.yaml") == shipped["ssv2_sevnet_s"]
    assert resolve_config("configs/ssv2_sevnet_s.yaml") == shipped["ssv2_sevnet_s"]  # the checkout's spelling
    own = tmp_path / "ssv2_sevnet_s.yaml"  # a file of the same name in the current folder wins
    own.write_text("model: {name: sevnet_xs}\ndata: {root: /x}\n")
    assert resolve_config("ssv2_sevnet_s.yaml") == Path("ssv2_sevnet_s.yaml")
    assert load_config("ssv2_sevnet_s.yaml").model.name == "sevnet_xs"
    assert load_config("ssv2_sevnet_s").model.name == "sevnet_s"  # the bare name is the shipped one
    with pytest.raises(FileNotFoundError, match=r"shipped config: folder_sevnet_xs, .*ssv2_sevnet_s"):
        resolve_config("ssv2_sevnet_xl")
    with pytest.raises(FileNotFoundError, match=r"config file not found: elsewhere/ssv2_sevnet_s\.yaml"):
        resolve_config("elsewhere/ssv2_sevnet_s.yaml")  # a path to another folder is not a name


def test_sevnet_configs_lists_names_with_their_purpose_and_prints_one(capsys) -> None:
    assert cli.main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines if line and not line.startswith("sevnet ")}
    assert set(by_name) == set(shipped_configs())
    assert "SEVNet-S on Something-Something v2" in by_name["ssv2_sevnet_s"]
    assert cli.main(["configs", "folder_sevnet_xs"]) == 0
    assert capsys.readouterr().out == shipped_configs()["folder_sevnet_xs"].read_text()
    assert cli.main(["configs", "nope"]) == 2
    assert "config file not found: nope (a path, or a shipped config: folder_sevnet_xs" in capsys.readouterr().err


def test_the_wheel_ships_every_config_and_loads_it_by_name_from_any_folder(tmp_path: Path) -> None:
    src = tmp_path / "project"  # a clean copy: an in-tree build/ could carry deleted files into the wheel
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheel_dir, target, cwd = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, src], check=True)
    (wheel,) = wheel_dir.glob("sevnet-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    cwd.mkdir()
    probe = (
        "import sevnet; from sevnet.engine.config import load_config, shipped_configs\n"
        "names = sorted(shipped_configs())\n"
        "for n in names: load_config(n, ['data.root=/videos'])\n"
        "print(sevnet.__file__); print(' '.join(names))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    where, names = out.stdout.splitlines()
    assert where.startswith(str(target))  # the installed copy, not the checkout
    assert names.split() == sorted(p.stem for p in (REPO / "src/sevnet/configs").glob("*.yaml"))
    cli_out = subprocess.run(
        [sys.executable, "-m", "sevnet", "configs", "folder_sevnet_xs"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli_out.returncode == 0 and "data:" in cli_out.stdout


def test_a_required_value_left_as_question_marks_is_an_error_naming_it_in_every_command(tmp_path: Path, capsys) -> None:
    from sevnet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"folder_sevnet_xs\.yaml: data\.root is required .*data\.root=\.\.\."):
        load_config("folder_sevnet_xs")  # data.root: ??? once silently became "" (the current folder)
    assert load_config("folder_sevnet_xs", ["data.root=/videos"]).data.root == "/videos"
    two = tmp_path / "two.yaml"
    two.write_text("data:\n  root: ???\n  num_frames: ???\ntrain:\n  out_dir: runs/x\n")
    with pytest.raises(ConfigError, match=r"data\.num_frames, data\.root are required"):
        load_config(two)
    with pytest.raises(ConfigError, match=r"data\.num_frames is required"):
        load_config(two, ["data.root=/videos"])
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        load_config(None, ["data.root=???"])
    for argv in (
        ["train", "folder_sevnet_xs"],
        ["eval", "folder_sevnet_xs", "--checkpoint", str(tmp_path / "model.safetensors")],
        ["quantize", str(tmp_path / "model.safetensors"), "--calib", "folder_sevnet_xs"],
        ["data", "check", "folder_sevnet_xs"],
    ):
        assert cli.main(argv) == 2, argv
        assert "data.root is required" in capsys.readouterr().err, argv


def test_a_listing_piped_into_head_ends_quietly(monkeypatch) -> None:
    """``sevnet configs | head -1``: once the reader has gone, a write raises BrokenPipeError."""
    read_end, write_end = os.pipe()

    class GonePipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return write_end

    monkeypatch.setattr(sys, "stdout", GonePipe())
    try:
        assert cli.main(["configs"]) == 141  # no traceback: the shell's code for SIGPIPE
    finally:
        os.close(read_end)
        os.close(write_end)

"""One error path: a SevnetError prints `sevnet VERB: error: ...` and exits 2; a bug keeps its traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevnet import cli
from sevnet.data.annotations import AnnotationError
from sevnet.engine.checkpoint import CheckpointError
from sevnet.errors import ConfigError, InputError, NotAFolderError, NotFoundError, SevnetError


def test_user_errors_share_one_base_and_keep_their_builtin_type() -> None:
    assert issubclass(AnnotationError, SevnetError) and issubclass(AnnotationError, ValueError)
    assert issubclass(CheckpointError, SevnetError) and issubclass(CheckpointError, RuntimeError)
    assert issubclass(ConfigError, ValueError) and issubclass(InputError, ValueError)
    assert issubclass(NotFoundError, FileNotFoundError) and issubclass(NotAFolderError, NotADirectoryError)
    assert all(issubclass(c, SevnetError) for c in (ConfigError, InputError, NotFoundError, NotAFolderError))


def _verb_raising(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    parser = cli.build_parser()

    def fail(args: object) -> int:
        raise exc

    original = parser.parse_known_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(
        parser, "parse_known_args", lambda argv: (original(argv)[0].__class__(verb="profile", _run=fail), [])
    )


def test_sevnet_error_prints_one_line_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _verb_raising(monkeypatch, CheckpointError("x.safetensors: not a sevnet checkpoint"))
    assert cli.main(["profile"]) == 2
    err = capsys.readouterr().err
    assert err == "sevnet profile: error: x.safetensors: not a sevnet checkpoint\n"


def test_unexpected_exception_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    _verb_raising(monkeypatch, ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["profile"])


def test_invalid_enum_value_names_key_and_choices(capsys) -> None:
    assert cli.main(["train", "configs/ssv2_sevnet_s.yaml", "train.amp=fp32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sevnet train: error:") and "train.amp" in err and "bf16" in err


def test_own_videos_config_builds_its_model_and_peers_can_use_it() -> None:
    import sevnet
    from sevnet.engine import load_config

    cfg = load_config("configs/folder_sevnet_xs.yaml", ["data.root=/videos"])
    assert cfg.data.format == "folder" and cfg.optim.name.name == "adamw" and cfg.train.max_minutes > 0
    model = sevnet.create_model(cfg.model.name, num_classes=3, **cfg.model.overrides)
    assert model.cfg.stem_temporal_kernel == 3 and not model.cfg.zero_init_last and model.cfg.motion_stages == (1,)
    peer = load_config(
        "configs/folder_sevnet_xs.yaml",
        ["data.root=/videos", "model.name=x3d_xs", "model.overrides={}", "model.init_from="],
    )
    assert (
        dict(peer.model.overrides) == {} and cfg.model.init_from == "motion_prior_xs" and peer.model.init_from is None
    )


def test_checkpoints_record_options_whose_default_may_change() -> None:
    from types import SimpleNamespace

    from sevnet.engine import load_config
    from sevnet.engine.trainer import checkpoint_meta

    cfg = load_config("configs/folder_sevnet_xs.yaml", ["data.root=/videos", "model.overrides={}"])
    meta = checkpoint_meta(cfg, SimpleNamespace(num_classes=3, classes=["a", "b", "c"], multi_label=False))
    assert {"stem_temporal_kernel", "zero_init_last"} <= set(meta["model_overrides"])


def test_a_verbs_user_errors_are_reported_by_cli_main_in_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["train", str(tmp_path / "missing.yaml")]) == 2  # a NotFoundError (SevnetError, FileNotFoundError)
    err = capsys.readouterr().err
    assert err.startswith(f"sevnet train: error: config file not found: {tmp_path / 'missing.yaml'} (a path, or a")
    assert cli.main(["export", str(tmp_path / "none.safetensors")]) == 2  # a CheckpointError (SevnetError)
    assert "sevnet export: error: " in capsys.readouterr().err


def _eval_raising(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> list[str]:
    """``sevnet eval``'s run replaced by one that raises ``exc``; the argv that reaches it."""
    import sevnet.commands.eval as eval_command

    def fail(args: object) -> int:
        raise exc

    monkeypatch.setattr(eval_command, "run", fail)
    return ["eval", "c.yaml", "--checkpoint", "m.safetensors"]


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("something broke"), ValueError("a bug"), FileNotFoundError("no such file: /tmp/x")],
    ids=["RuntimeError", "ValueError", "FileNotFoundError"],
)
def test_a_builtin_error_in_a_command_is_not_turned_into_a_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys, exc: Exception
) -> None:
    """No verb has a list of built-in exceptions that mean bad input any more: only a SevnetError is
    reported in one line; a built-in one propagates (``sys.exit(main())``: traceback, exit 1)."""
    argv = _eval_raising(monkeypatch, exc)
    with pytest.raises(type(exc), match=str(exc)):
        cli.main(argv)
    assert "error:" not in capsys.readouterr().err


def test_cuda_out_of_memory_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess
    import sys

    import torch

    argv = _eval_raising(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(torch.OutOfMemoryError):
        cli.main(argv)
    # and as a process: Python's own traceback and exit status 1, not `sevnet eval: error:` and 2
    script = (
        "import sys, sevnet.commands.eval as e\n"
        "from sevnet import cli\n"
        "def run(args): raise RuntimeError('a bug deep inside')\n"
        "e.run = run\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {"PYTHONPATH": ":".join(sys.path), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr and "RuntimeError: a bug deep inside" in done.stderr
    assert "sevnet eval: error:" not in done.stderr


@pytest.mark.parametrize("where", ["before the verb", "after the verb"])
def test_debug_prints_a_sevnet_errors_traceback_then_its_line(
    monkeypatch: pytest.MonkeyPatch, capsys, where: str
) -> None:
    argv = _eval_raising(monkeypatch, ConfigError("c.yaml: data.root is required"))
    argv = ["--debug", *argv] if where == "before the verb" else [*argv, "--debug"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "in fail" in err
    assert err.endswith(
        "sevnet.errors.ConfigError: c.yaml: data.root is required\nsevnet eval: error: c.yaml: data.root is required\n"
    )


def test_without_debug_a_sevnet_error_has_no_traceback(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert cli.main(_eval_raising(monkeypatch, InputError("--calib-clips must be >= 1, got 0"))) == 2
    assert capsys.readouterr().err == "sevnet eval: error: --calib-clips must be >= 1, got 0\n"


def test_debug_is_accepted_after_a_sub_verb(tmp_path: Path, capsys) -> None:
    assert cli.main(["data", "check", str(tmp_path / "nope"), "--no-progress", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("sevnet data: error: no such folder, and config file")
    assert cli.main(["data", "check", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_bad_input_found_deep_in_the_library_is_a_typed_sevnet_error(tmp_path: Path, capsys) -> None:
    """Library code raises the typed errors (still the built-ins: ``except ValueError`` holds)."""
    import sevnet
    from sevnet.data.folder import read_split_file

    with pytest.raises(ConfigError, match="unknown model name 'bogus'"):
        sevnet.create_model("bogus", num_classes=2)
    with pytest.raises(ValueError, match="block must be one of"):
        sevnet.create_model("sevnet_xs", num_classes=2, block="foo")
    split = tmp_path / "split.csv"
    split.write_bytes(b"path,class,split\n\xff\xfe.mp4,a,train\n")
    with pytest.raises(AnnotationError, match=r"split\.csv:2: not UTF-8 text"):
        read_split_file(split)
    assert cli.main(["profile", "--input", "16x"]) == 2  # an InputError, no traceback
    assert capsys.readouterr().err == "sevnet profile: error: input must look like TxHxW (e.g. 16x160x160), got '16x'\n"

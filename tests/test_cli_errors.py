"""One error path: a SevnetError prints `sevnet VERB: error: ...` and exits 2; a bug keeps its traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevnet import cli
from sevnet.data.annotations import AnnotationError
from sevnet.engine.checkpoint import CheckpointError
from sevnet.errors import ConfigError, SevnetError


def test_user_errors_share_one_base_and_keep_their_builtin_type() -> None:
    assert issubclass(AnnotationError, SevnetError) and issubclass(AnnotationError, ValueError)
    assert issubclass(CheckpointError, SevnetError) and issubclass(CheckpointError, RuntimeError)
    assert issubclass(ConfigError, ValueError)


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
        "configs/folder_sevnet_xs.yaml", ["data.root=/videos", "model.name=x3d_xs", "model.overrides={}"]
    )
    assert dict(peer.model.overrides) == {}


def test_checkpoints_record_options_whose_default_may_change() -> None:
    from types import SimpleNamespace

    from sevnet.engine import load_config
    from sevnet.engine.trainer import checkpoint_meta

    cfg = load_config("configs/folder_sevnet_xs.yaml", ["data.root=/videos", "model.overrides={}"])
    meta = checkpoint_meta(cfg, SimpleNamespace(num_classes=3, classes=["a", "b", "c"], multi_label=False))
    assert {"stem_temporal_kernel", "zero_init_last"} <= set(meta["model_overrides"])


def test_a_verbs_user_errors_are_reported_by_cli_main_in_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["train", str(tmp_path / "missing.yaml")]) == 2  # FileNotFoundError: train.USER_ERRORS
    err = capsys.readouterr().err
    assert err.startswith(f"sevnet train: error: config file not found: {tmp_path / 'missing.yaml'} (a path, or a")
    assert cli.main(["export", str(tmp_path / "none.safetensors")]) == 2  # a CheckpointError (SevnetError)
    assert "sevnet export: error: " in capsys.readouterr().err

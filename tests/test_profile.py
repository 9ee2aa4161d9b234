import json

from sevnet.cli import main


def test_profile_json_and_plot(tmp_path, capsys) -> None:
    png = tmp_path / "gmacs.png"
    assert (
        main(
            [
                "profile",
                "sevnet_xs",
                "r3d_18",
                "--input",
                "4x32x32",
                "--repeats",
                "1",
                "--json",
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["sevnet_xs", "r3d_18", "sevnet_xs", "r3d_18"]
    assert rows[0]["input"] == "8x112x112" and rows[2]["input"] == "4x32x32"
    assert 0.4 < rows[0]["gmacs"] < 0.6 and rows[0]["params_m"] > 0.5
    assert all(r["latency_ms"] > 0 and r["activation_mb"] > 0 for r in rows)
    assert png.stat().st_size > 1000


def test_profile_table_states_convention(capsys) -> None:
    assert main(["profile", "sevnet_xs", "--input", "none", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "multiply-adds" in out and "sevnet_xs" in out and "thread" in out

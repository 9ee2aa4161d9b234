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


def test_profile_table_has_a_header_per_input_and_flags_a_wide_latency_spread() -> None:
    from sevnet.models.profile import ProfileRow, format_table

    def row(model: str, inp: str, lo: float, med: float, hi: float, reference: bool) -> ProfileRow:
        return ProfileRow(model, inp, 1.0, 0.5, 10.0, med, 2, lo, hi, reference)

    rows = [row("sevnet_s", "8x112x112", 9, 10, 11, True), row("sevnet_s", "16x160x160", 20, 40, 90, False)]
    out = format_table(rows)
    ref, common = out.index("-- at each model's reference input"), out.index("-- at the common input 16x160x160")
    assert ref < out.index("8x112x112") < common < out.index("20.0 / 40.0 / 90.0")
    assert "warning: latency varied" in out and "sevnet_s 16x160x160" in out and "sevnet_s 8x112x112" not in out

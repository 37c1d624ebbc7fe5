"""Divergence records in the results layer: keys, table, figure, leaderboard, check, CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.results.check import check_leaderboard
from dgbench.results.divergence import divergence_tables, plot_divergence, read_leaderboard, summarize_divergence
from dgbench.results.frame import IDENTITY_FIELDS, records_to_frame, summarize
from dgbench.results.leaderboard import LeaderboardError, load_leaderboard, publish
from dgbench.results.plot import plot_results
from dgbench.results.record import fingerprint, new_record, record_key
from dgbench.results.store import ResultStore

from results_fixtures import STAMP, appearance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LAYERS = ("stem", "layer1.0", "layer2.0")


def div(model: str, pair: str, values: tuple[float, ...], *, ins: tuple[bool, ...] = (False,) * 3, seed: int = 0,
        ptype: str = "appearance", dataset: str = "digits") -> list[dict]:
    return [new_record(task="classification", kind="divergence", protocol="divergence", dataset=dataset, model=model,
                       pair=pair, pair_spec={"name": pair, "type": ptype}, layer=layer, layer_index=i, has_in=has,
                       metrics={"divergence": v}, seed=seed, **STAMP)
            for i, (layer, v, has) in enumerate(zip(LAYERS, values, ins), 1)]


def records() -> list[dict]:
    return (div("small_resnet", "typeset", (2.5, 2.0, 0.5)) +
            div("small_resnet_ibn_b", "typeset", (0.9, 0.7, 0.4), ins=(True, True, False)) +
            div("small_resnet", "halves", (0.04, 0.1, 1.2), ptype="content") +
            div("small_resnet_ibn_b", "halves", (0.17, 0.2, 1.3), ins=(True, True, False), ptype="content"))


def test_keys_differ_per_layer_and_pair_and_other_records_keep_theirs() -> None:
    recs = records()
    assert len({r["key"] for r in recs}) == len(recs)
    a = appearance("m", "origin", 1.0, 1.0)
    assert a["key"] == fingerprint({f: a.get(f) for f in IDENTITY_FIELDS})[:32] == record_key(a)


def test_summary_table_is_layers_by_models_per_pair_with_in_marked() -> None:
    frame = records_to_frame(records() + div("small_resnet", "typeset", (2.7, 2.0, 0.5), seed=1))
    assert summarize(frame).empty  # the generic summary leaves divergence rows alone
    s = summarize_divergence(frame)
    row = s[(s["model"] == "small_resnet") & (s["pair"] == "typeset") & (s["layer"] == "stem")].iloc[0]
    assert (row["n"], round(row["divergence"], 6), round(row["divergence_se"], 6)) == (2, 2.6, 0.1)
    tables = divergence_tables(frame)
    assert [t.title.split(":")[0] for t in tables] == ["digits · divergence · typeset (appearance)",
                                                        "digits · divergence · halves (content)"]
    t = tables[0]
    assert t.columns == ["#", "layer", "small_resnet", "small_resnet_ibn_b"]
    assert t.rows[0] == ["1", "stem", "2.600 ± 0.100 n=2", "0.900 IN"]
    assert [r[1] for r in t.rows] == list(LAYERS)


def test_plot_draws_fig5_alone_and_beside_other_kinds(tmp_path: Path) -> None:
    frame = records_to_frame(records())
    out = plot_divergence(frame, tmp_path / "fig5.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert int.from_bytes(data[16:20], "big") > int.from_bytes(data[20:24], "big")  # panels side by side
    assert plot_results(frame, tmp_path / "via-plot.png").read_bytes().startswith(PNG_MAGIC)
    mixed = records() + [appearance("m", "origin", 5.0, 1.0), appearance("m", "rgb+50", 9.0, 2.0, (5.0, 1.0))]
    tall = plot_results(records_to_frame(mixed), tmp_path / "mixed.png").read_bytes()
    assert int.from_bytes(tall[20:24], "big") > int.from_bytes(tall[16:20], "big")  # stacked: 3 panels


def test_leaderboard_round_trip_and_check(tmp_path: Path) -> None:
    written = publish(records_to_frame(records()), tmp_path / "lb")
    assert [p.name for p in written] == ["digits-divergence.csv", "digits-divergence.md"]
    again = publish(records_to_frame(records()), tmp_path / "lb2")
    assert again[0].read_bytes() == written[0].read_bytes()
    lb = load_leaderboard(written[0])
    assert lb.attrs["kind"] == "divergence" and len(lb) == 12
    assert "| 1 | stem | 2.500 | 0.900 IN |" in written[1].read_text()
    assert check_leaderboard(lb, records()).ok
    moved = records()
    moved[0]["metrics"]["divergence"] += 0.2
    res = check_leaderboard(lb, moved, {"divergence": 0.1})
    assert not res.ok and list(res.failures["delta"]) == [pytest.approx(0.2)]
    assert check_leaderboard(lb, moved, {"all": 0.25}).ok
    gone = check_leaderboard(lb, records()[3:])
    assert not gone.ok and len(gone.missing) == 3


def test_a_bad_divergence_leaderboard_names_line_and_column(tmp_path: Path) -> None:
    path = publish(records_to_frame(records()), tmp_path)[0]
    lines = path.read_text().splitlines()
    assert ",halves,content,2,layer1.0,false,1,0.100," in lines[2]  # sorted: model, pair, layer
    lines[2] = lines[2].replace(",0.100,", ",-0.100,")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LeaderboardError, match=r"digits-divergence.csv:3: column 'divergence_nats': .* never negative"):
        read_leaderboard(path)


def test_a_duplicated_divergence_row_names_both_lines(tmp_path: Path) -> None:
    path = publish(records_to_frame(records()), tmp_path)[0]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "", lines[2]]) + "\n")  # a blank line, then line 3 again
    with pytest.raises(LeaderboardError, match=rf"digits-divergence.csv:{len(lines) + 2}: duplicate row, "
                                               r"same key as line 3 \(digits, divergence, small_resnet, "):
        read_leaderboard(path)


def test_cli_table_plot_publish_check(tmp_path: Path) -> None:
    res = tmp_path / "res"
    ResultStore(res).append(records())
    runner = CliRunner()
    out = runner.invoke(app, ["table", "--results", str(res), "--protocol", "divergence", "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "#,layer,small_resnet,small_resnet_ibn_b"
    png = tmp_path / "f.png"
    assert runner.invoke(app, ["plot", "--results", str(res), "-o", str(png)]).exit_code == 0
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert runner.invoke(app, ["leaderboard", "publish", "--results", str(res), "--out", str(tmp_path / "lb")]).exit_code == 0
    ok = runner.invoke(app, ["check", "--baseline", str(tmp_path / "lb" / "digits-divergence.csv"), "--results", str(res)])
    assert ok.exit_code == 0, ok.output


def test_a_divergence_leaderboard_reruns_its_models_on_its_dataset(tmp_path: Path) -> None:
    from dgbench.protocols import get

    lb = load_leaderboard(publish(records_to_frame(records()), tmp_path)[0])
    req = get("divergence").rerun_request("digits", lb)
    assert (req.model, req.dataset, req.limit) == (["small_resnet", "small_resnet_ibn_b"], "digits", None)

"""Tables: hand-made records -> exact cells, seeds as mean ± SE (n), the paper join, renderers."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import UnknownNameError
from dgbench.results.frame import records_to_frame, severity_of, summarize
from dgbench.results.store import ResultStore
from dgbench.results.tables import NoResultsError, render_table

from results_fixtures import appearance, cross, table1_records


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_appearance_table_cells_exact() -> None:
    # Default: Table 1's cells, "top-1/top-5 (drop/drop)".
    assert _csv(render_table(table1_records(), fmt="csv"))[1] == [
        "resnet50", "24.30/7.10", "28.20/9.60 (3.90/2.50)", "40.00/19.00 (15.70/11.90)"]
    rows = _csv(render_table(table1_records(), fmt="csv", metric="top1"))
    assert rows == [
        ["model", "origin", "rgb+50", "std-x1.5"],
        ["resnet50", "24.30", "28.20 (3.90)", "40.00 (15.70)"],
        ["resnet50_ibn_b", "23.60", "23.80 (0.20)", "23.60 (0.00)"],
    ]
    top5 = _csv(render_table(table1_records(), fmt="csv", metric="top5"))
    assert top5[2] == ["resnet50_ibn_b", "6.90", "7.00 (0.10)", "6.90 (0.00)"]


def test_seeds_aggregate_to_mean_standard_error_and_count() -> None:
    recs = []
    for seed, (o, s) in enumerate(((10.0, 11.0), (11.0, 13.0), (12.0, 15.0))):
        recs.append(appearance("m", "origin", o, 1.0, seed=seed))
        recs.append(appearance("m", "rgb+50", s, 2.0, (o, 1.0), seed=seed))
    rows = _csv(render_table(recs, fmt="csv", metric="top1"))
    # origin 10, 11, 12: mean 11, sd 1, se 1/sqrt(3) = 0.577; shifted 11, 13, 15: se 2/sqrt(3) = 1.155;
    # drops 1, 2, 3: mean 2, se 0.577.
    assert rows[1] == ["m", "11.00 ± 0.58 n=3", "13.00 ± 1.15 (2.00 ± 0.58) n=3"]
    both = _csv(render_table(recs, fmt="csv"))  # two metrics: values, then their standard errors
    assert both[1][2] == "13.00/2.00 ± 1.15/0.00 (2.00/1.00 ± 0.58/0.00) n=3"
    s = summarize(records_to_frame(recs))
    row = s[s["shift"] == "rgb+50"].iloc[0]
    assert row["n"] == 3 and row["top1_err_se"] == pytest.approx(2 / math.sqrt(3))


def test_missing_drop_is_computed_from_the_reference() -> None:
    recs = [appearance("m", "origin", 20.0, 5.0), appearance("m", "r+50", 23.5, 6.0, drop=False)]
    assert _csv(render_table(recs, fmt="csv", metric="top1"))[1] == ["m", "20.00", "23.50 (3.50)"]


def test_shift_columns_follow_the_run_order_with_the_reference_first() -> None:
    recs = [appearance("m", "std-x1.5", 30.0, 9.0, (20.0, 5.0)), appearance("m", "origin", 20.0, 5.0),
            appearance("m", "monet", 50.0, 20.0, (20.0, 5.0))]
    assert _csv(render_table(recs, fmt="csv"))[0] == ["model", "origin", "std-x1.5", "monet"]


def test_paper_rows_join_the_measured_models() -> None:
    rows = _csv(render_table(table1_records(), fmt="csv", metric="top1", with_paper=True))
    assert rows[0] == ["model", "source", "origin", "rgb+50", "std-x1.5", "r+50", "monet"]
    by = {(r[0], r[1]): r[2:] for r in rows[1:]}
    # Measured rows say who trained the weights: the baseline's are torchvision's, not the paper's.
    assert set(by) == {("resnet50", "dgbench · torchvision V1"), ("resnet50", "paper"),
                       ("resnet50_ibn_b", "dgbench · IBN-Net authors"), ("resnet50_ibn_b", "paper")}
    assert by[("resnet50_ibn_b", "paper")] == ["23.64", "23.82 (0.18)", "23.64 (0.00)", "25.10 (1.46)",
                                               "50.45 (26.81)"]
    assert by[("resnet50", "dgbench · torchvision V1")][3:] == ["–", "–"]  # shifts only the paper has
    # Table 1's origin row, not also Table 2's (the clean rows only fill what Table 1 lacks).
    assert by[("resnet50", "paper")][0] == "24.27"
    # The paper's ImageNet numbers do not join a table of another dataset.
    digits = _csv(render_table(table1_records("digits"), fmt="csv", with_paper=True))
    assert all("paper" not in r for r in digits)


def test_paper_join_accepts_refined_dataset_and_protocol_names() -> None:
    recs = [appearance("resnet50_ibn_a", "origin", 22.0, 6.0, dataset="imagenet-val", protocol="appearance-lite")]
    rows = _csv(render_table(recs, fmt="csv", with_paper=True))
    assert ["resnet50_ibn_a", "paper", "22.54/6.32"] == rows[2][:3]


def test_paper_clean_rows_join_by_canonical_model_name() -> None:
    """Tables 2, 4 and 5 (clean ImageNet error, protocol 'classification') join a measured
    appearance table's origin column; the paper's resnext101_32x4d_ibn_a joins the registry's
    resnext101_ibn_a, and a measured alias joins too."""
    recs = [appearance("resnext101_ibn_a", "origin", 21.0, 5.5),
            appearance("resnext101_ibn_a", "rgb+50", 22.0, 6.0, (21.0, 5.5)),
            appearance("resnet101", "origin", 23.0, 6.5),
            appearance("ibn_a", "origin", 22.0, 6.0)]  # an alias of resnet50_ibn_a
    rows = _csv(render_table(recs, fmt="csv", metric="top1", with_paper=True))
    assert rows[0][:4] == ["model", "source", "origin", "rgb+50"]
    by = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert set(by[("resnext101_ibn_a", "paper")][1:]) == {"–"}  # clean error only
    assert by[("resnext101_ibn_a", "paper")][0] == "20.88"  # Table 2
    assert by[("resnet101", "paper")][0] == "22.48"  # Table 2 (re-implementation)
    assert by[("ibn_a", "paper")][:2] == ["22.54", "25.54 (3.00)"]  # Table 1, under the measured spelling
    assert by[("ibn_a (ibn_ratio=0.25)", "paper")][0] == "22.49"  # Table 5 (a kwargs row)
    assert len([k for k in by if k == ("ibn_a", "paper")]) == 1
    assert ("resnet101", "dgbench · torchvision V1") in by


def test_cross_domain_segmentation_grid_and_drop_sign() -> None:
    cs, gta = {"miou": 60.0, "pixel_acc": 90.0}, {"miou": 55.0, "pixel_acc": 88.0}
    recs = [cross("deeplab_resnet50_ibn_a", "cityscapes", "cityscapes", cs),
            cross("deeplab_resnet50_ibn_a", "cityscapes", "gta5", {"miou": 30.0, "pixel_acc": 70.0}, cs),
            cross("deeplab_resnet50_ibn_a", "gta5", "gta5", gta),
            cross("deeplab_resnet50_ibn_a", "gta5", "cityscapes", {"miou": 25.0, "pixel_acc": 60.0}, gta)]
    rows = _csv(render_table(recs, fmt="csv"))
    assert rows == [
        ["model", "train \\ test", "cityscapes", "gta5"],
        ["deeplab_resnet50_ibn_a", "cityscapes", "60.00/90.00", "30.00/70.00 (30.00/20.00)"],
        ["deeplab_resnet50_ibn_a", "gta5", "25.00/60.00 (30.00/28.00)", "55.00/88.00"],
    ]
    miou = _csv(render_table(recs, fmt="csv", metric="miou", with_paper=True))
    assert ["deeplab_resnet50_ibn_a", "paper", "gta5", "26.00 (38.80)", "64.80"] in miou


def test_cross_domain_classification_shows_accuracy() -> None:
    real, synth = {"top1_acc": 97.0, "top1_err": 3.0}, {"top1_acc": 99.0, "top1_err": 1.0}
    recs = [cross("small_ibn_a", "digits", "digits", real, task="classification", dataset="digits"),
            cross("small_ibn_a", "digits", "typeset-digits", {"top1_acc": 60.0, "top1_err": 40.0}, real,
                  task="classification", dataset="digits"),
            cross("small_ibn_a", "typeset-digits", "typeset-digits", synth, task="classification", dataset="digits"),
            cross("small_ibn_a", "typeset-digits", "digits", {"top1_acc": 50.0, "top1_err": 50.0}, synth,
                  task="classification", dataset="digits")]
    rows = _csv(render_table(recs, fmt="csv"))
    assert rows[1] == ["small_ibn_a", "digits", "97.00", "60.00 (37.00)"]
    err = _csv(render_table(recs, fmt="csv", metric="top1_err"))
    assert err[2] == ["small_ibn_a", "typeset-digits", "50.00 (49.00)", "1.00"]  # error up: positive too


def test_markdown_and_latex_renderers_escape() -> None:
    recs = [appearance("resnet50_ibn_a", "origin", 22.0, 6.0, seed=s) for s in (0, 1)]
    md = render_table(recs, fmt="markdown", metric="top1")
    assert "| model | origin |" in md and "| resnet50_ibn_a | 22.00 ± 0.00 n=2 |" in md
    tex = render_table(recs, fmt="latex", metric="top1")
    assert r"resnet50\_ibn\_a & 22.00 $\pm$ 0.00 n=2 \\" in tex and r"\begin{tabular}{lr}" in tex


def test_bad_names_suggest() -> None:
    with pytest.raises(UnknownNameError, match="top1"):
        render_table(table1_records(), fmt="csv", metric="top-1")
    with pytest.raises(UnknownNameError, match="markdown"):
        render_table(table1_records(), fmt="markdwn")
    with pytest.raises(NoResultsError):
        render_table([], fmt="csv")


def test_severity_from_spec_or_name() -> None:
    assert severity_of("rgb+30", {"family": "rgb+", "severity": 30}) == ("rgb+", 30.0)
    assert severity_of("std-x1.25", None) == ("std-x", 1.25)
    assert severity_of("monet", {"kind": "cyclegan"})[0] == ""


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    ResultStore(tmp_path).append(table1_records())
    return tmp_path


def test_cli_table_formats(results_dir: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["table", "--protocol", "appearance", "--format", "csv", "--metric", "top1",
                              "--results", str(results_dir)])
    assert res.exit_code == 0, res.output
    assert _csv(res.output)[1] == ["resnet50", "24.30", "28.20 (3.90)", "40.00 (15.70)"]
    res = runner.invoke(app, ["table", "--with-paper", "--results", str(results_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "paper" in res.output and "23.82/6.96 (0.18/0.10)" in res.output


def test_cli_table_with_paper_on_an_empty_store_shows_the_paper(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["table", "--protocol", "cross-domain", "--with-paper", "--format", "csv",
                                   "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "deeplab_resnet50_ibn_b,paper,gta5,29.60/66.80 (34.60/25.60),64.20/92.40" in res.output


def test_cli_table_bad_input(results_dir: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["table", "--protocol", "apperance", "--results", str(results_dir)])
    assert isinstance(res.exception, UnknownNameError) and "appearance" in str(res.exception)
    res = runner.invoke(app, ["table", "--dataset", "imagenett", "--results", str(results_dir)])
    assert isinstance(res.exception, UnknownNameError) and "imagenet" in str(res.exception)
    res = runner.invoke(app, ["table", "--results", str(results_dir / "empty")])
    assert isinstance(res.exception, NoResultsError)


def test_runs_of_another_configuration_are_not_averaged_as_seeds() -> None:
    from dgbench.results.frame import SupersededResultsWarning

    quick = [appearance("m", "origin", 30.0, 9.0, limit=100), appearance("m", "rgb+50", 40.0, 9.0, (30.0, 9.0), limit=100)]
    full = [appearance("m", "origin", 20.0, 5.0), appearance("m", "rgb+50", 23.0, 6.0, (20.0, 5.0))]
    with pytest.warns(SupersededResultsWarning, match=r"1 older result\(s\) measured with other limit"):
        rows = _csv(render_table(quick + full, fmt="csv", metric="top1"))
    assert rows[1] == ["m", "20.00", "23.00 (3.00)"]


def _digits_pair() -> list[dict]:
    """A cross-domain 2x2 as the built-in protocol writes it: each record names its *test* set."""
    real, synth = {"top1_acc": 99.0, "top1_err": 1.0}, {"top1_acc": 99.5, "top1_err": 0.5}
    kw = dict(task="classification")
    return [cross("m", "digits", "digits", real, dataset="digits", **kw),
            cross("m", "digits", "typeset-digits", {"top1_acc": 66.0, "top1_err": 34.0}, real,
                  dataset="typeset-digits", **kw),
            cross("m", "typeset-digits", "typeset-digits", synth, dataset="typeset-digits", **kw),
            cross("m", "typeset-digits", "digits", {"top1_acc": 65.5, "top1_err": 34.5}, synth,
                  dataset="digits", **kw)]


def test_a_cross_domain_pair_is_one_table_whatever_each_record_names() -> None:
    text = render_table(_digits_pair(), fmt="markdown")
    assert text.count("**") == 2  # one table
    assert "**digits-typeset-digits · cross-domain: top-1 accuracy %" in text
    assert "| m | digits | 99.00 | 66.00 (33.00) |" in text
    assert "| m | typeset-digits | 65.50 (34.00) | 99.50 |" in text
    assert "|---|---|---:|---:|" in text  # the train column is text, left-aligned


def test_cli_dataset_names_a_pair_by_either_domain(tmp_path: Path) -> None:
    ResultStore(tmp_path).append(_digits_pair() + table1_records("digits"))
    for name in ("typeset-digits", "digits-typeset-digits"):
        res = CliRunner().invoke(app, ["table", "--protocol", "cross-domain", "--dataset", name,
                                       "--format", "csv", "--results", str(tmp_path)])
        assert res.exit_code == 0, res.output
        assert _csv(res.output)[1:] == [["m", "digits", "99.00", "66.00 (33.00)"],
                                        ["m", "typeset-digits", "65.50 (34.00)", "99.50"]]


def test_a_subset_row_is_marked_and_kept_apart_from_full_set_rows(tmp_path: Path) -> None:
    recs = table1_records()
    recs += [appearance("resnet50_ibn_a", "origin", 20.0, 5.0, subset=200),
             appearance("resnet50_ibn_a", "rgb+50", 21.0, 5.5, (20.0, 5.0), subset=200),
             appearance("densenet121", "rgb+50", 22.0, 6.0, (20.0, 5.0), limit=100)]
    rows = _csv(render_table(recs, fmt="csv", metric="top1"))
    labels = [r[0] for r in rows[1:]]
    assert labels == ["densenet121 [first 100]", "resnet50", "resnet50_ibn_a [subset of 200]", "resnet50_ibn_b"]
    assert rows[3] == ["resnet50_ibn_a [subset of 200]", "20.00", "21.00 (1.00)", "–"]
    text = render_table(recs, fmt="markdown", metric="top1")
    assert "measured on part of the evaluation set only" in text
    assert "part of the evaluation set" not in render_table(table1_records(), fmt="markdown")
    from dgbench.results.leaderboard import load_leaderboard, publish

    lb = load_leaderboard(publish(recs[:6] + recs[6:8], tmp_path)[0])
    notes = dict(zip(lb["model"] + "/" + lb["shift"], lb["note"]))
    assert notes["resnet50_ibn_a/rgb+50"] == "subset of 200 images only" and notes["resnet50/origin"] == ""


def _digits_records() -> list[dict]:
    """The built-in digits-appearance leaderboard as records (six models, five shifts), and a
    segmentation 2x2 with two metrics per cell."""
    from dgbench.config import data_dir

    rows = list(csv.DictReader((data_dir("leaderboards") / "digits-appearance.csv").open()))
    origin = {r["model"]: (float(r["top1_err_pct"]), float(r["top5_err_pct"])) for r in rows if r["shift"] == "origin"}
    recs = [appearance(r["model"], r["shift"], float(r["top1_err_pct"]), float(r["top5_err_pct"]),
                       None if r["shift"] == "origin" else origin[r["model"]], dataset="digits")
            for r in sorted(rows, key=lambda r: ["origin", "rgb+50", "r+50", "std-x1.5", "cv-stylize"].index(r["shift"]))]
    for model in ("deeplab_small_resnet", "deeplab_small_resnet_ibn_a"):
        for train in ("digit-scenes", "typeset-digit-scenes"):
            own = {"miou": 69.95, "pixel_acc": 93.5}
            recs.append(cross(model, train, train, own, dataset=train))
            other = "typeset-digit-scenes" if train == "digit-scenes" else "digit-scenes"
            recs.append(cross(model, train, other, {"miou": 36.68, "pixel_acc": 82.38}, own, dataset=other))
    from dgbench.results.record import new_record
    from results_fixtures import STAMP

    for i, model in enumerate(sorted(origin)):  # a divergence table: a column per model
        for j, layer in enumerate(("stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0")):
            recs.append(new_record(kind="divergence", task="classification", protocol="divergence", dataset="digits",
                                   model=model, pair="cv-stylize", pair_spec={"type": "appearance"}, layer=layer,
                                   layer_index=j + 1, has_in=j in (1, 2), metrics={"divergence": 1.5 - 0.2 * j + i / 10},
                                   **STAMP))
    return recs


@pytest.mark.parametrize("columns", [80, 100])
def test_the_default_table_is_readable_in_a_narrow_terminal(tmp_path: Path, columns: int) -> None:
    ResultStore(tmp_path / "res").append(_digits_records())
    res = CliRunner().invoke(app, ["table", "--results", str(tmp_path / "res")], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "…" not in res.output  # no cell, header or title cut
    assert max(len(line.rstrip()) for line in lines) <= columns
    assert "13.19" in res.output  # small_resnet under rgb+50
    assert "feature divergence" in res.output and "layer4.0" in res.output
    if columns == 80:  # a table per metric, the drop under its value
        assert "(12.36)" in res.output and "top-1 error %" in res.output and "top-5 error %" in res.output


def test_a_wide_terminal_keeps_the_papers_joined_cells(tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").append(_digits_records())
    res = CliRunner().invoke(app, ["table", "--results", str(tmp_path / "res")], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "13.19/0.00 (12.36/0.00)" in res.output

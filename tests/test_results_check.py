"""The regression check: passes on an unchanged run, fails (exit 1) on a planted regression."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import DgbenchError, UnknownNameError
from dgbench.results.check import (
    DIFF_COLUMNS,
    NOISE_COLUMNS,
    check,
    check_leaderboard,
    parse_tolerances,
    set_rerun,
    tolerance_for,
)
from dgbench.results.leaderboard import publish
from dgbench.results.store import ResultStore

from results_fixtures import appearance, table1_records

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def baseline(tmp_path: Path) -> Path:
    publish(table1_records("digits"), tmp_path / "lb")
    return tmp_path / "lb" / "digits-appearance.csv"


def _regressed(delta: float = 1.0) -> list[dict]:
    """Table 1 records with IBN-b's rgb+50 error worse by ``delta`` points."""
    recs = []
    for r in table1_records("digits"):
        if r["model"] == "resnet50_ibn_b" and r["shift"] == "rgb+50":
            r = appearance("resnet50_ibn_b", "rgb+50", 23.8 + delta, 7.0, (23.6, 6.9), dataset="digits")
        recs.append(r)
    return recs


def test_unchanged_run_passes(baseline: Path) -> None:
    result = check_leaderboard(baseline, table1_records("digits"))
    assert result.ok and list(result.diff.columns) == DIFF_COLUMNS + NOISE_COLUMNS
    assert len(result.diff) == 6 * 4 and (result.diff["delta"].fillna(0) == 0).all()
    assert result.missing.empty and result.extra.empty


def test_planted_regression_fails_on_the_metric_and_its_drop(baseline: Path) -> None:
    result = check_leaderboard(baseline, _regressed(1.0))
    assert not result.ok
    bad = result.failures
    assert list(bad["metric"]) == ["top1_err_pct", "top1_err_drop_pct"]
    assert set(bad["key"]) == {"resnet50_ibn_b · rgb+50"}
    assert list(bad["delta"]) == [1.0, 1.0] and list(bad["baseline"]) == [23.8, 0.2]


def test_tolerances_are_absolute_per_metric(baseline: Path) -> None:
    assert check_leaderboard(baseline, _regressed(0.3), {"top1_err": 0.3}).ok
    assert not check_leaderboard(baseline, _regressed(0.3), {"top1_err_pct": 0.3}).ok  # the drop has 0
    assert check_leaderboard(baseline, _regressed(0.3), {"all": 0.5}).ok
    assert not check_leaderboard(baseline, _regressed(0.3), {"top5_err": 1.0}).ok
    assert tolerance_for("top1_err_drop_pct", {"top1_err": 0.2, "top1_err_drop": 0.4}) == 0.4
    assert tolerance_for("top5_err_pct", {}) == 0.0
    with pytest.raises(UnknownNameError, match="top1_err"):
        check_leaderboard(baseline, _regressed(0.3), {"top1_error": 0.3})
    for bad in ("top1_err", "top1_err=x", "=1", "top1_err=-1"):
        with pytest.raises(DgbenchError, match="--tolerance"):
            parse_tolerances([bad])
    assert parse_tolerances(["top1_err=0.5", "all=0.1"]) == {"top1_err": 0.5, "all": 0.1}


def test_missing_rows_fail_and_extra_rows_are_listed(baseline: Path) -> None:
    recs = [r for r in table1_records("digits") if r["shift"] != "std-x1.5"]
    recs.append(appearance("resnet50_ibn_a", "origin", 22.0, 6.0, dataset="digits"))
    recs.append(appearance("resnet50", "origin", 20.0, 6.0, dataset="imagenet"))  # another leaderboard's
    result = check_leaderboard(baseline, recs)
    assert not result.ok
    assert sorted(result.missing["model"]) == ["resnet50", "resnet50_ibn_b"]
    assert list(result.extra["model"]) == ["resnet50_ibn_a"]


def test_rerun_callback_supplies_the_measurement(baseline: Path, tmp_path: Path) -> None:
    seen = {}

    def rerun(base, results_dir):
        seen["rows"], seen["dir"] = len(base), results_dir
        return _regressed(2.0)

    result = check(baseline, tmp_path / "res", rerun=rerun)
    assert seen == {"rows": 6, "dir": tmp_path / "res"} and not result.ok


def _cli(args: list[str]):
    return CliRunner().invoke(app, ["check", *args], env={"COLUMNS": "200"})


def test_cli_check_passes_on_unchanged_results(baseline: Path, tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").append(table1_records("digits"))
    res = _cli(["--baseline", str(baseline), "--results", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    assert "check passed: 24 value(s) within tolerance" in res.output


def test_cli_check_fails_with_exit_1_and_a_diff_table(baseline: Path, tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").append(_regressed(1.0))
    res = _cli(["--baseline", str(baseline), "--results", str(tmp_path / "res")])
    assert res.exit_code == 1, res.output
    assert "resnet50_ibn_b · rgb+50" in res.output and "+1.00" in res.output and "FAIL" in res.output
    assert "check FAILED: 2 of 24 value(s) out of tolerance" in res.output
    res = _cli(["--baseline", str(baseline), "--results", str(tmp_path / "res"), "--tolerance", "top1_err=1"])
    assert res.exit_code == 0, res.output


def test_cli_check_bad_input(baseline: Path, tmp_path: Path) -> None:
    res = _cli(["--baseline", str(tmp_path / "nope.csv")])
    assert isinstance(res.exception, DgbenchError) and "no baseline leaderboard" in str(res.exception)
    paper = REPO / "leaderboards" / "paper" / "imagenet-appearance.csv"
    res = _cli(["--baseline", str(paper), "--results", str(tmp_path)])
    assert isinstance(res.exception, DgbenchError) and "source = dgbench" in str(res.exception)


def test_cli_rerun_uses_the_installed_runner(baseline: Path, tmp_path: Path) -> None:
    set_rerun(lambda base, results_dir: table1_records("digits"))
    try:
        res = _cli(["--baseline", str(baseline), "--results", str(tmp_path), "--rerun"])
    finally:
        set_rerun(None)
    assert res.exit_code == 0, res.output


def test_cli_check_defaults_to_the_builtin_baseline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dgbench.cli.results as cli_results

    monkeypatch.setattr(cli_results, "DEFAULT_BASELINE", "nope-appearance.csv")
    res = _cli(["--results", str(tmp_path)])
    assert isinstance(res.exception, DgbenchError)
    assert "leaderboards/nope-appearance.csv" in str(res.exception) and "leaderboard publish" in str(res.exception)

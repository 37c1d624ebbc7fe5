"""mCE arithmetic on a hand-computed example, AlexNet's published errors, and the corruption report."""
from __future__ import annotations

from pathlib import Path

import pytest

from dgbench.metrics.corruption import BENCHMARK, Reference, alexnet, summarize
from dgbench.results import corruption as report
from dgbench.results.frame import records_to_frame

REF = Reference("toy", clean_top1_err=40.0, corruption_top1_err={"a": 80.0, "b": 60.0})
ERRORS = {"a": {1: 30.0, 2: 40.0, 3: 50.0, 4: 60.0, 5: 70.0}, "b": {1: 20.0, 2: 25.0, 3: 30.0, 4: 35.0, 5: 40.0}}
GROUPS = {"a": "noise", "b": "blur"}


def test_mce_and_relative_mce_by_hand() -> None:
    s = summarize(ERRORS, GROUPS, clean=20.0, reference=REF, benchmark=("a", "b"))
    # CE_a = mean(30..70) / 80 = 50 / 80; CE_b = 30 / 60
    assert s.ce == pytest.approx({"a": 62.5, "b": 50.0})
    assert s.mce == pytest.approx(56.25)
    # rCE_a = (50 - 20) / (80 - 40); rCE_b = (30 - 20) / (60 - 40)
    assert s.rel_ce == pytest.approx({"a": 75.0, "b": 50.0})
    assert s.rel_mce == pytest.approx(62.5)
    assert s.mean_err == pytest.approx(40.0)
    assert s.family_err == pytest.approx({"noise": 50.0, "blur": 30.0})
    assert s.severity_err == pytest.approx({1: 25.0, 2: 32.5, 3: 40.0, 4: 47.5, 5: 55.0})


def test_mce_needs_every_severity_and_a_reference() -> None:
    partial = {"a": {3: 50.0}, "b": ERRORS["b"]}
    s = summarize(partial, GROUPS, clean=20.0, reference=REF, benchmark=("a", "b"))
    assert s.mce is None and "missing: a" in s.mce_missing
    assert s.family_err["noise"] == 50.0 and s.ce == pytest.approx({"b": 50.0})
    assert summarize(ERRORS, GROUPS, 20.0, None, ("a", "b")).mce is None
    flat = Reference("flat", clean_top1_err=60.0, corruption_top1_err={"a": 80.0, "b": 60.0})
    s = summarize(ERRORS, GROUPS, clean=20.0, reference=flat, benchmark=("a", "b"))
    assert s.mce == pytest.approx(56.25) and s.rel_mce is None and "error on b does not exceed" in s.mce_missing


def test_alexnet_normalizes_itself_to_100() -> None:
    ref = alexnet()
    assert set(ref.corruption_top1_err) == set(BENCHMARK) and "ICLR 2019" in ref.source
    assert ref.corruption_top1_err["gaussian_noise"] == pytest.approx(88.6428)
    # the paper's Table 1 prints them to 0.1: the unrounded data must round to the printed values
    printed = [88.6, 89.4, 92.3, 82.0, 82.6, 78.6, 79.8, 86.7, 82.7, 81.9, 56.5, 85.3, 64.6, 71.8, 60.7]
    assert [ref.corruption_top1_err[c] for c in BENCHMARK] == pytest.approx(printed, abs=0.0501)
    assert ref.clean_top1_err == pytest.approx(43.5, abs=0.05)
    errors = {c: {k: e for k in range(1, 6)} for c, e in ref.corruption_top1_err.items()}
    s = summarize(errors, {c: "noise" for c in errors}, ref.clean_top1_err, ref)
    assert s.mce == pytest.approx(100.0) and s.rel_mce == pytest.approx(100.0)


def _records(model: str, clean: float, errs: dict[str, dict[int, float]]) -> list[dict]:
    recs = [dict(key=f"{model}-o", task="classification", protocol="corruptions", dataset="digits", model=model,
                 shift="origin", shift_spec={"name": "origin", "kind": "origin", "params": {}},
                 metrics={"top1_err": clean, "top5_err": 0.0}, reference=None, seed=0)]
    for c, sev in errs.items():
        for k, e in sev.items():
            spec = {"name": f"{c}-{k}", "kind": "corruption", "family": c, "severity": float(k),
                    "params": {"corruption": c, "severity": k, "group": GROUPS.get(c, "digital"), "seed": 0, "work_size": 224}}
            recs.append(dict(key=f"{model}-{c}-{k}", task="classification", protocol="corruptions", dataset="digits",
                             model=model, shift=f"{c}-{k}", shift_spec=spec, metrics={"top1_err": e, "top5_err": 0.0},
                             reference="origin", seed=0))
    return recs


def test_report_tables_csv_and_plot_from_records(tmp_path: Path) -> None:
    frame = records_to_frame(_records("plain", 40.0, {"a": {k: 80.0 for k in range(1, 6)}, "b": {k: 60.0 for k in range(1, 6)}})
                             + _records("ibn", 20.0, ERRORS))
    reps = report.corruption_reports(frame, reference="none")
    assert [r.model for r in reps] == ["plain", "ibn"] and all(r.summary.mce is None for r in reps)
    # normalized by the plain model of the same results: the hand example again (benchmark = the 15,
    # so a and b are not benchmark corruptions: CE per corruption, no mCE)
    reps = report.corruption_reports(frame, reference="plain")
    ibn = reps[1].summary
    assert ibn.reference == "plain" and ibn.clean == 20.0
    assert ibn.family_err == pytest.approx({"noise": 50.0, "blur": 30.0})
    md = report.render(reps, "markdown")
    assert "| ibn | 20.0 |" in md and "| **mean** |" in md and "| a | noise | 30.0 | 40.0 | 50.0 | 60.0 | 70.0 | 50.0 |" in md
    text = report.render(reps, "csv")
    assert "digits,corruptions,ibn,a,noise,5,70.00" in text and "digits,corruptions,ibn,family_mean,blur,,30.00" in text
    assert report.family_curve(ibn, "noise") == ([0, 1, 2, 3, 4, 5], [20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    png = report.plot(reps, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(Exception, match="reference model"):
        report.corruption_reports(frame, reference="nope")


def test_cli_corruptions_prints_the_report_and_draws_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dgbench.cli import app
    from dgbench.results.store import ResultStore

    monkeypatch.setenv("DGBENCH_RESULTS", str(tmp_path / "results"))
    ResultStore(tmp_path / "results").append(_records("plain", 40.0, {"a": {k: 80.0 for k in range(1, 6)}}) + _records("ibn", 20.0, {"a": ERRORS["a"]}))
    res = CliRunner().invoke(app, ["corruptions", "--reference", "plain", "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "| ibn | 20.0 | - | - | - | 50.0 |" in res.output and (tmp_path / "p.png").is_file()
    res = CliRunner().invoke(app, ["corruptions", "--format", "csv"])
    assert res.exit_code == 0 and "digits,corruptions,ibn,a,noise,1,30.00" in res.output


def test_a_reference_with_no_error_on_a_corruption_leaves_ce_undefined() -> None:
    """A reference at 0 % error on ``b``: CE_b has no scale (it divided by zero). It is left undefined,
    and so is mCE: a mean over the other corruptions would be another figure under the same name."""
    perfect_b = Reference("perfect-b", clean_top1_err=0.0, corruption_top1_err={"a": 80.0, "b": 0.0})
    s = summarize(ERRORS, GROUPS, clean=20.0, reference=perfect_b, benchmark=("a", "b"))
    assert s.ce == pytest.approx({"a": 62.5}) and s.mce is None and s.rel_mce is None
    assert s.mce_missing.startswith("CE and mCE undefined: perfect-b's error on b is 0% (nothing to normalize by")
    partial = summarize({"b": ERRORS["b"]}, GROUPS, clean=20.0, reference=perfect_b, benchmark=("a", "b"))
    assert partial.mce_missing.endswith("missing: a") and "error on b is 0%" in partial.mce_missing


def test_cli_reference_model_with_zero_error_says_so_in_the_footer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dgbench.cli import app
    from dgbench.results.store import ResultStore

    monkeypatch.setenv("DGBENCH_RESULTS", str(tmp_path / "results"))
    ResultStore(tmp_path / "results").append(
        _records("plain", 0.0, {"gaussian_noise": {k: 0.0 for k in range(1, 6)}, "shot_noise": {k: 50.0 for k in range(1, 6)}})
        + _records("ibn", 5.0, {"gaussian_noise": {k: 10.0 for k in range(1, 6)}, "shot_noise": {k: 25.0 for k in range(1, 6)}}))
    res = CliRunner().invoke(app, ["corruptions", "--reference", "plain"])
    assert res.exit_code == 0 and res.exception is None, res.output
    out = " ".join(res.output.split())
    assert "CE and mCE undefined: plain's error on gaussian_noise is 0%" in out
    assert "| gaussian_noise | digital | 10.0 | 10.0 | 10.0 | 10.0 | 10.0 | 10.0 | - | - |" in out
    assert "| shot_noise | digital | 25.0 | 25.0 | 25.0 | 25.0 | 25.0 | 25.0 | 50.0 | 40.0 |" in out  # rCE = (25 - 5) / (50 - 0)

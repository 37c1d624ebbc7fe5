"""``dgbench compare`` / results.paired.compare on hand-made records with known per-image outcomes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import DgbenchError
from dgbench.metrics.outcomes import SampleOutcomes
from dgbench.results import outcomes
from dgbench.results.paired import MissingRecordsError, compare
from dgbench.results.store import ResultStore
from results_fixtures import appearance

N = 400


def _correct(seed: int, acc: float) -> np.ndarray:
    return np.random.default_rng(seed).random(N) < acc


def store_pair(root: Path, protocol: str = "appearance", with_outcomes: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """Models a and b under origin and rgb+50, top-1 correctness known per image; top-5 all right."""
    truth = {("a", "origin"): _correct(1, 0.9), ("b", "origin"): _correct(1, 0.9).copy(),
             ("a", "rgb+50"): _correct(2, 0.7), ("b", "rgb+50"): _correct(3, 0.8)}
    truth[("b", "origin")][:3] = ~truth[("b", "origin")][:3]  # b differs from a on three images only
    recs = []
    for (model, shift), c in truth.items():
        err, origin = 100 * (1 - c.mean()), 100 * (1 - truth[(model, "origin")].mean())
        rec = appearance(model, shift, err, 0.0, (origin, 0.0), protocol=protocol, dataset="digits",
                         dataset_fingerprint="fp", num_samples=N)
        if with_outcomes:
            out = SampleOutcomes(np.ones(N, bool), np.where(c, 1, 2), {1: c, 5: np.ones(N, bool)})
            outcomes.write(root, protocol, rec["key"], out, "order")
        recs.append(rec)
    ResultStore(root).append(recs)
    return truth


def test_compare_against_scipy(tmp_path: Path) -> None:
    truth = store_pair(tmp_path)
    result = compare("a", "b", "appearance", results=tmp_path)
    assert [r.condition for r in result.rows] == ["origin", "rgb+50"] and result.dataset == "digits"
    raw = []
    for r in result.rows:
        a, b = truth[("a", r.condition)], truth[("b", r.condition)]
        assert r.n == N and r.err_a == pytest.approx(100 * (1 - a.mean())) and r.err_b == pytest.approx(100 * (1 - b.mean()))
        assert r.diff == pytest.approx(r.err_b - r.err_a)
        assert (r.a_only_right, r.b_only_right) == (int((a & ~b).sum()), int((b & ~a).sum()))
        p = sps.binomtest(r.a_only_right, r.a_only_right + r.b_only_right, 0.5).pvalue
        assert r.p == pytest.approx(p)
        assert r.diff_lo <= r.diff <= r.diff_hi
        raw.append(p)
    # Holm over the two conditions, by hand
    lo, hi = sorted(raw)
    want = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), min(1, hi))}
    assert [r.p_holm for r in result.rows] == pytest.approx([want[p] for p in raw])
    origin = result.rows[0]
    assert origin.a_only_right + origin.b_only_right == 3 and origin.p > 0.2  # three flips: no evidence
    top5 = compare("a", "b", "appearance", results=tmp_path, metric="top5")
    assert all(r.err_a == r.err_b == 0 and r.p == 1.0 and (r.diff_lo, r.diff_hi) == (0, 0) for r in top5.rows)


def test_missing_records_and_outcomes_are_one_line(tmp_path: Path) -> None:
    store_pair(tmp_path)
    with pytest.raises(MissingRecordsError, match=r"no stored appearance results for c in .*; run: dgbench run --model c --protocol appearance$"):
        compare("a", "c", "appearance", results=tmp_path)
    bare = tmp_path / "bare"
    store_pair(bare, with_outcomes=False)
    with pytest.raises(DgbenchError, match=r"a / origin: the stored appearance record has no per-image outcomes .* --force$"):
        compare("a", "b", "appearance", results=bare)
    with pytest.raises(DgbenchError, match="--metric 'miou': compare reads top1 or top5"):
        compare("a", "b", "appearance", results=tmp_path, metric="miou")


def test_cli_prints_the_paired_table_and_json(tmp_path: Path) -> None:
    store_pair(tmp_path)
    res = CliRunner().invoke(app, ["compare", "a", "b", "--protocol", "appearance", "--results", str(tmp_path)],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "rgb+50" in res.output and "McNemar" in res.output and "Holm" in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
    res = CliRunner().invoke(app, ["compare", "a", "b", "--results", str(tmp_path), "--format", "json"])
    import json

    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [r["condition"] for r in rows] == ["origin", "rgb+50"] and {"p", "p_holm", "diff_lo"} <= set(rows[0])
    res = CliRunner().invoke(app, ["compare", "a", "zz", "--results", str(tmp_path), "--no-run"])
    assert res.exit_code != 0 and "run: dgbench run --model zz --protocol appearance" in str(res.exception or res.output)


def test_table_intervals_wilson_and_paired_bootstrap(tmp_path: Path) -> None:
    """`dgbench table --intervals`: the error's Wilson interval (scipy), the drop's paired bootstrap
    interval (scipy's bootstrap on the images), one metric per table, the caption saying so."""
    truth = store_pair(tmp_path)
    res = CliRunner().invoke(app, ["table", "--protocol", "appearance", "--results", str(tmp_path),
                                   "--format", "csv", "--metric", "top1"])  # intervals are the default
    assert res.exit_code == 0, res.output
    cells = {row.split(",", 1)[0]: row for row in res.output.splitlines()}
    a_origin, a_rgb = truth[("a", "origin")], truth[("a", "rgb+50")]
    ci = sps.binomtest(int((~a_origin).sum()), N).proportion_ci(method="wilson")
    assert f"{100 * (1 - a_origin.mean()):.2f} [{100 * ci.low:.1f}, {100 * ci.high:.1f}]" in cells["a"]
    boot = sps.bootstrap((a_origin.astype(float), a_rgb.astype(float)), lambda x, y: np.mean(x) - np.mean(y),
                         paired=True, vectorized=False, n_resamples=5000, method="percentile",
                         random_state=np.random.default_rng(0)).confidence_interval
    drop = 100 * (a_origin.mean() - a_rgb.mean())
    import re

    got = re.search(r"\((-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]\)", cells["a"].split('"')[-2] if '"' in cells["a"] else cells["a"])
    assert float(got[1]) == pytest.approx(drop, abs=0.01)
    assert float(got[2]) == pytest.approx(100 * boot.low, abs=0.6) and float(got[3]) == pytest.approx(100 * boot.high, abs=0.6)
    plain = CliRunner().invoke(app, ["table", "--protocol", "appearance", "--results", str(tmp_path), "--format", "csv",
                                     "--no-intervals"])
    assert plain.exit_code == 0 and "[" not in plain.output
    narrow = CliRunner().invoke(app, ["table", "--protocol", "appearance", "--results", str(tmp_path)],
                                env={"COLUMNS": "80"})
    assert narrow.exit_code == 0 and "top-5 error" in narrow.output and "Wilson" in narrow.output  # a table per metric
    assert max(len(line) for line in narrow.output.splitlines()) <= 80
    # Too narrow for the brackets: compact, the interval as one word lo–hi under its value.
    tight = CliRunner().invoke(app, ["table", "--protocol", "appearance", "--results", str(tmp_path)],
                               env={"COLUMNS": "40"})
    assert f"{100 * ci.low:.1f}–{100 * ci.high:.1f}" in tight.output and "stands under its value" in tight.output
    assert max(len(line) for line in tight.output.splitlines()) <= 40


def test_error_consistency_table(tmp_path: Path) -> None:
    from dgbench.results.consistency import as_matrix, consistency

    truth = store_pair(tmp_path)
    frame = consistency("appearance", results=tmp_path)
    assert frame[["model_a", "model_b", "condition"]].values.tolist() == [["a", "b", "origin"], ["a", "b", "rgb+50"]]
    for _, row in frame.iterrows():
        a, b = truth[("a", row.condition)], truth[("b", row.condition)]
        po = np.mean(a == b)
        pe = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
        assert row.kappa == pytest.approx((po - pe) / (1 - pe)) and row.n == N
    assert as_matrix(frame).loc["a · b"].tolist() == pytest.approx(frame.kappa.tolist())
    top5 = consistency("appearance", results=tmp_path, metric="top5")  # both all right: undefined
    assert top5.kappa.isna().all()
    res = CliRunner().invoke(app, ["consistency", "--results", str(tmp_path)], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "a · b" in res.output and "Geirhos" in res.output
    with pytest.raises(DgbenchError, match="error consistency needs two models"):
        consistency("appearance", results=tmp_path, models=["a", "zz"])


def test_other_protocol_kinds_are_one_line(tmp_path: Path) -> None:
    for cmd in (["compare", "a", "b"], ["consistency"]):
        res = CliRunner().invoke(app, [*cmd, "--protocol", "cross-domain", "--results", str(tmp_path)])
        assert res.exit_code != 0 and "--protocol cross-domain: a cross-domain protocol" in str(res.exception)


def test_table_vs_marks_significant_cells_holm_over_the_table(tmp_path: Path) -> None:
    """`dgbench table --vs a`: each of b's errors tested against a's by exact McNemar (scipy's
    binomial test), Holm over the table's comparisons; only rgb+50 is marked."""
    from dgbench.results.frame import load_results, summarize
    from dgbench.results.versus import add_versus

    truth = store_pair(tmp_path)
    frame = load_results(tmp_path)
    records = {r["key"]: r for r in ResultStore(tmp_path).iter_records("appearance")}
    got = add_versus(summarize(frame), frame, records, tmp_path, "a").set_index(["model", "shift"])
    raw = {}
    for shift in ("origin", "rgb+50"):
        a, b = truth[("a", shift)], truth[("b", shift)]
        flips = int((a & ~b).sum()), int((b & ~a).sum())
        raw[shift] = sps.binomtest(flips[0], sum(flips), 0.5).pvalue
    lo, hi = sorted(raw, key=raw.get)
    want = {lo: min(1, 2 * raw[lo]), hi: max(min(1, 2 * raw[lo]), raw[hi])}
    assert [got.loc[("b", s), "top1_err_vs_p"] for s in ("origin", "rgb+50")] == pytest.approx([want["origin"], want["rgb+50"]])
    assert np.isnan(got.loc[("a", "origin"), "top1_err_vs_p"])  # the reference is not compared with itself
    assert got.loc[("b", "origin"), "top5_err_vs_p"] == 1.0  # both all right: no discordant image
    res = CliRunner().invoke(app, ["table", "--results", str(tmp_path), "--vs", "a", "--metric", "top1", "--format", "csv",
                                   "--no-intervals"])
    assert res.exit_code == 0, res.output
    cells = {row.split(",", 1)[0]: row.split(",")[1:] for row in res.output.splitlines()}
    assert cells["b"][0] == f"{100 * (1 - truth[('b', 'origin')].mean()):.2f}"  # 3 flips: unmarked
    assert cells["b"][1].startswith(f"{100 * (1 - truth[('b', 'rgb+50')].mean()):.2f}*")
    assert "*" not in ",".join(cells["a"])
    md = CliRunner().invoke(app, ["table", "--results", str(tmp_path), "--vs", "a", "--format", "markdown"])
    assert "differs from a" in md.output and "Holm-adjusted over the table's 2 comparisons" in md.output
    bad = CliRunner().invoke(app, ["table", "--results", str(tmp_path), "--vs", "zz"])
    assert bad.exit_code != 0 and "--vs zz: no stored result of that model" in str(bad.exception or bad.output)


def test_rows_over_several_seeds_resample_runs_and_images(tmp_path: Path) -> None:
    """A row averaged over three seeds gets the two-level bootstrap interval of its error and drop
    (the function, on the stored outcomes), shown in the table with mean ± se."""
    from dgbench.metrics.stats import replicate_bootstrap
    from dgbench.results.frame import load_results, summarize
    from dgbench.results.intervals import N_REPLICATE, add_intervals

    truth, recs = {}, []
    for seed in range(3):
        for shift, acc in (("origin", 0.9), ("rgb+50", 0.7 + 0.05 * seed)):
            c = np.random.default_rng(10 * seed + len(shift)).random(N) < acc
            truth[(seed, shift)] = c
            origin = 100 * (1 - truth[(seed, "origin")].mean())
            rec = appearance("a", shift, 100 * (1 - c.mean()), 0.0, (origin, 0.0), dataset="digits", seed=seed,
                             dataset_fingerprint="fp", num_samples=N)
            outcomes.write(tmp_path, "appearance", rec["key"], SampleOutcomes(np.ones(N, bool), np.where(c, 1, 2),
                                                                               {1: c, 5: np.ones(N, bool)}), "order")
            recs.append(rec)
    ResultStore(tmp_path).append(recs)
    frame = load_results(tmp_path)
    records = {r["key"]: r for r in ResultStore(tmp_path).iter_records("appearance")}
    got = add_intervals(summarize(frame), frame, records, tmp_path).set_index("shift")
    assert got.loc["rgb+50", "n"] == 3
    wrong = np.stack([~truth[(s, "rgb+50")] for s in range(3)]).astype(float)
    _, lo, hi = replicate_bootstrap(wrong, n_boot=N_REPLICATE)
    assert (got.loc["rgb+50", "top1_err_lo"], got.loc["rgb+50", "top1_err_hi"]) == pytest.approx((100 * lo, 100 * hi))
    drop = np.stack([truth[(s, "origin")].astype(float) - truth[(s, "rgb+50")] for s in range(3)])
    _, dlo, dhi = replicate_bootstrap(drop, n_boot=N_REPLICATE)
    assert (got.loc["rgb+50", "top1_err_drop_lo"], got.loc["rgb+50", "top1_err_drop_hi"]) == pytest.approx((100 * dlo, 100 * dhi))
    assert dlo < got.loc["rgb+50", "top1_err_drop"] / 100 < dhi
    res = CliRunner().invoke(app, ["table", "--results", str(tmp_path), "--metric", "top1", "--format", "csv"])
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in res.output and "n=3" in res.output and "±" in res.output

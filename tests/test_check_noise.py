"""``dgbench check`` knows noise: the leaderboard's per-image outcomes (``.outcomes.json``, written by
``leaderboard publish``) paired with a new run's; a change fails when beyond the tolerance or
significant (exact McNemar on the flipped images, Holm-adjusted), the fixed tolerance kept."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.metrics.outcomes import SampleOutcomes
from dgbench.results import outcomes
from dgbench.results.check import check
from dgbench.results.leaderboard_outcomes import load_sidecar, sidecar_path
from dgbench.results.store import ResultStore
from results_fixtures import appearance

N = 400


def _truth() -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(7)
    return {(m, s): rng.random(N) < acc for m in ("a", "b") for s, acc in (("origin", 0.9), ("rgb+50", 0.7))}


def _store(root: Path, truth: dict[tuple[str, str], np.ndarray]) -> None:
    recs = []
    for (model, shift), c in truth.items():
        err, origin = 100 * (1 - c.mean()), 100 * (1 - truth[(model, "origin")].mean())
        rec = appearance(model, shift, err, 0.0, (origin, 0.0), dataset="digits", dataset_fingerprint="fp",
                         num_samples=N)
        outcomes.write(root, "appearance", rec["key"], SampleOutcomes(np.ones(N, bool), np.where(c, 1, 2),
                                                                       {1: c, 5: np.ones(N, bool)}), "order")
        recs.append(rec)
    ResultStore(root).append(recs)


def _flip(truth, key, right_to_wrong: int, wrong_to_right: int):
    out = {k: v.copy() for k, v in truth.items()}
    c = out[key]
    c[np.flatnonzero(c)[:right_to_wrong]] = False
    c[np.flatnonzero(~truth[key])[:wrong_to_right]] = True
    return out


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, dict]:
    truth = _truth()
    _store(tmp_path / "base", truth)
    res = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(tmp_path / "base"), "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    return tmp_path / "lb" / "digits-appearance.csv", truth


def test_publish_writes_a_byte_stable_sidecar(published, tmp_path: Path) -> None:
    csv_path, truth = published
    side = sidecar_path(csv_path)
    first = side.read_bytes()
    assert len(first) < 2_000  # 8 rows of 400 images: two 50-byte bitsets each, base64
    CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(tmp_path / "base"), "--out", str(tmp_path / "lb")])
    assert side.read_bytes() == first
    loaded = load_sidecar(csv_path)
    evaluated, top1 = loaded.correct(("a", "", "rgb+50"), 1)
    assert evaluated.all() and (top1 == truth[("a", "rgb+50")]).all()
    assert json.loads(first)["rows"][0]["evaluated"] is None  # every image evaluated: not stored


def test_a_significant_change_fails_within_the_tolerance(published, tmp_path: Path) -> None:
    csv_path, truth = published
    _store(tmp_path / "new", _flip(truth, ("a", "rgb+50"), 12, 0))  # +3 points, all one way
    args = ["check", "--baseline", str(csv_path), "--results", str(tmp_path / "new"), "--tolerance", "all=5"]
    res = CliRunner().invoke(app, [*args, "--all"], env={"COLUMNS": "160"})
    assert res.exit_code == 1, res.output
    assert "12/0" in res.output and "McNemar" in res.output and "Holm" in res.output
    assert "significantly changed" in res.output
    fixed = CliRunner().invoke(app, [*args, "--no-significance"])
    assert fixed.exit_code == 0, fixed.output  # the fixed tolerance alone passes


def test_p_values_against_scipy_and_noise_passes(published, tmp_path: Path) -> None:
    csv_path, truth = published
    new = _flip(_flip(truth, ("a", "rgb+50"), 3, 2), ("b", "origin"), 0, 4)
    _store(tmp_path / "new", new)
    result = check(csv_path, tmp_path / "new", {"all": 5})
    tested = result.diff[result.diff["flips"].notna()]
    assert len(tested) == 8 and result.ok  # 4 rows x top-1/top-5; drops are judged by their errors
    raw = []
    for _, r in tested.iterrows():
        model, shift = r["key"].split(" · ")
        k = 1 if r["metric"].startswith("top1") else 5
        before = truth[(model, shift)] if k == 1 else np.ones(N, bool)
        after = new[(model, shift)] if k == 1 else np.ones(N, bool)
        want = (int((before & ~after).sum()), int((~before & after).sum()))
        assert tuple(r["flips"]) == want
        raw.append(1.0 if sum(want) == 0 else sps.binomtest(want[0], sum(want), 0.5).pvalue)
    order = np.argsort(raw, kind="stable")
    holm = np.maximum.accumulate(np.minimum(1, np.array(raw)[order] * (len(raw) - np.arange(len(raw)))))
    want_holm = np.empty(len(raw))
    want_holm[order] = holm
    assert tested["p_holm"].tolist() == pytest.approx(want_holm.tolist())
    assert dict(zip(tested["key"] + tested["metric"], tested["flips"]))["b · origintop1_err_pct"] == (0, 4)


def test_without_a_sidecar_or_outcomes_the_tolerance_decides(published, tmp_path: Path) -> None:
    csv_path, truth = published
    _store(tmp_path / "new", _flip(truth, ("a", "rgb+50"), 12, 0))
    sidecar_path(csv_path).unlink()
    result = check(csv_path, tmp_path / "new", {"all": 5})
    assert result.ok and result.diff["flips"].isna().all()


def test_a_stale_sidecar_pairs_nothing_and_a_publish_without_outcomes_removes_it(published, tmp_path: Path) -> None:
    csv_path, truth = published
    # A sidecar from another publish: its bits are not the published numbers' (row "a · rgb+50")
    stale = _flip(truth, ("a", "rgb+50"), 40, 0)
    _store(tmp_path / "other", stale)
    CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(tmp_path / "other"), "--out", str(tmp_path / "o")])
    sidecar_path(csv_path).write_bytes(sidecar_path(tmp_path / "o" / "digits-appearance.csv").read_bytes())
    _store(tmp_path / "new", truth)
    result = check(csv_path, tmp_path / "new", {"all": 5})
    flips = dict(zip(result.diff["key"] + result.diff["metric"], result.diff["flips"]))
    assert flips["a · rgb+50top1_err_pct"] is None  # not paired with images of another number
    assert flips["a · origintop1_err_pct"] == (0, 0) and result.ok
    # Published again from records without outcomes: the old sidecar goes with the old numbers
    bare = tmp_path / "bare"
    _store(bare, truth)
    for f in (bare / "outcomes" / "appearance").iterdir():
        f.unlink()
    res = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(bare), "--out", str(csv_path.parent)])
    assert res.exit_code == 0, res.output
    assert csv_path.is_file() and not sidecar_path(csv_path).exists()

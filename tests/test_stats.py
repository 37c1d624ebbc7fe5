"""dgbench.metrics.stats against scipy.stats and hand-computed cases (ties, no discordant pairs,
all-correct models, the edges of an interval)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from dgbench.metrics import stats


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 599), (150, 50_000), (49_990, 50_000), (1, 1)])
def test_clopper_pearson_matches_beta_quantiles(k, n):
    lo, hi = stats.clopper_pearson(k, n)
    want_lo = 0.0 if k == 0 else sps.beta.ppf(0.025, k, n - k + 1)
    want_hi = 1.0 if k == n else sps.beta.ppf(0.975, k + 1, n - k)
    assert lo == pytest.approx(want_lo, abs=1e-9)
    assert hi == pytest.approx(want_hi, abs=1e-9)
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_clopper_pearson_edges_by_hand():
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n)
    assert stats.clopper_pearson(0, 20)[1] == pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-12)
    assert stats.clopper_pearson(20, 20) == pytest.approx((0.025 ** (1 / 20), 1.0), abs=1e-12)
    assert all(math.isnan(v) for v in stats.clopper_pearson(0, 0))
    with pytest.raises(ValueError):
        stats.clopper_pearson(5, 4)


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 599), (150, 50_000)])
def test_wilson_matches_scipy(k, n):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_by_hand():
    # k=2, n=10, z=1.959964: centre (0.2 + z^2/20) / (1 + z^2/10), half z/(1+z^2/10) sqrt(.016 + z^2/400)
    z = 1.959963984540054
    centre = (0.2 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.2 * 0.8 / 10 + z * z / 400)
    assert stats.wilson(2, 10) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert stats.wilson(2, 10) == pytest.approx((0.0567, 0.5098), abs=1e-4)


@pytest.mark.parametrize("b,c", [(0, 5), (3, 9), (7, 7), (1, 0), (40, 62), (250, 300)])
def test_mcnemar_exact_matches_binomtest(b, c):
    assert stats.mcnemar_exact(b, c) == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_by_hand_ties_and_no_discordant_pairs():
    assert stats.mcnemar_exact(0, 0) == 1.0  # nothing discordant: no evidence at all
    assert stats.mcnemar_exact(4, 4) == 1.0  # a tie
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert stats.mcnemar_exact(1, 4) == pytest.approx(2 * 6 / 32)  # 2 * (1 + 5) / 2^5
    a = np.array([1, 1, 0, 0, 1, 1], bool)
    b = np.array([1, 0, 0, 1, 0, 0], bool)  # a-only right: 3, b-only right: 1
    assert stats.mcnemar(a, b) == pytest.approx(stats.mcnemar_exact(3, 1))
    assert stats.mcnemar(a, a) == 1.0


def test_holm_by_hand():
    # sorted p: .01 .02 .03 .04 (m=4) -> .04 .06 .06 .06 (monotone), back in input order
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.01, 0.01]) == pytest.approx([0.02, 0.02])  # ties
    out = stats.holm([0.01, float("nan"), 0.04])  # NaN kept, m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([]) == []


def test_paired_bootstrap_point_and_interval():
    rng = np.random.default_rng(1)
    n = 4000
    a = rng.random(n) < 0.80
    b = a.copy()
    flip = rng.random(n) < 0.06  # b differs from a on ~6 % of the images
    b[flip] = ~b[flip]
    r = stats.paired_bootstrap_diff(a, b, n_boot=20_000)
    assert r.diff == pytest.approx((1 - b.mean()) - (1 - a.mean()))
    assert (r.b_only_wrong, r.a_only_wrong) == (int((a & ~b).sum()), int((b & ~a).sum()))
    # independent implementation: scipy's paired percentile bootstrap on the images themselves
    ref = sps.bootstrap((a.astype(float), b.astype(float)), lambda x, y: np.mean(1 - y) - np.mean(1 - x),
                        paired=True, vectorized=False, n_resamples=5000, method="percentile",
                        random_state=np.random.default_rng(2))
    assert r.lo == pytest.approx(ref.confidence_interval.low, abs=2e-3)
    assert r.hi == pytest.approx(ref.confidence_interval.high, abs=2e-3)
    # and the normal approximation of a paired difference: se = sqrt((p+ + p- - d^2) / n)
    se = math.sqrt((r.b_only_wrong / n + r.a_only_wrong / n - r.diff ** 2) / n)
    assert r.lo == pytest.approx(r.diff - 1.96 * se, abs=1.5e-3)
    assert r.hi == pytest.approx(r.diff + 1.96 * se, abs=1.5e-3)
    assert stats.paired_bootstrap_diff(a, b, n_boot=2000) == stats.paired_bootstrap_diff(a, b, n_boot=2000)  # seeded


def test_paired_bootstrap_degenerate_cases():
    same = np.array([1, 0, 1, 1, 0], bool)
    r = stats.paired_bootstrap_diff(same, same)
    assert (r.diff, r.lo, r.hi, r.b_only_wrong, r.a_only_wrong) == (0.0, 0.0, 0.0, 0, 0)
    all_right = np.ones(50, bool)
    assert stats.paired_bootstrap_diff(all_right, all_right).hi == 0.0
    one_worse = all_right.copy()
    one_worse[3] = False
    r = stats.paired_bootstrap_diff(all_right, one_worse)
    assert r.diff == pytest.approx(1 / 50) and r.lo == 0.0 and r.hi >= 1 / 50
    with pytest.raises(ValueError):
        stats.paired_bootstrap_diff(same, same[:3])
    assert math.isnan(stats.paired_bootstrap_diff([], []).diff)


def test_error_consistency_by_hand_and_against_sklearn():
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 1, 1, 0, 1], bool)
    # observed 6/8; p_a = p_b = 5/8: expected 25/64 + 9/64 = 34/64; kappa = (48/64 - 34/64) / (30/64)
    assert stats.error_consistency(a, b) == pytest.approx(14 / 30)
    assert stats.error_consistency(a, a) == pytest.approx(1.0)
    assert stats.error_consistency(a, ~a) == pytest.approx(-15 / 17)  # obs 0, exp 30/64: -(30/64)/(34/64)
    assert math.isnan(stats.error_consistency(np.ones(5, bool), np.ones(5, bool)))  # all correct: undefined
    assert stats.error_consistency(np.ones(4, bool), np.array([1, 0, 1, 0], bool)) == pytest.approx(0.0)
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    x, y = rng.random(500) < 0.7, rng.random(500) < 0.6
    assert stats.error_consistency(x, y) == pytest.approx(sk.cohen_kappa_score(x, y))


def test_binom_cdf_against_scipy():
    for k, n, p in [(0, 5, 0.5), (3, 10, 0.2), (100, 50_000, 0.003), (25_000, 50_000, 0.5)]:
        assert stats.binom_cdf(k, n, p) == pytest.approx(sps.binom.cdf(k, n, p), rel=1e-9, abs=1e-300)


def test_replicate_bootstrap_seeds_by_hand_and_images_against_scipy():
    # No variation between images: only the runs vary. Two runs at 10 % and 30 % error: a
    # replicate's mean is 10, 20 or 30 % with probabilities 1/4, 1/2, 1/4, so the 95 % interval
    # is exactly [10, 30] and the mean 20.
    v = np.array([[0.1] * 40, [0.3] * 40])
    assert stats.replicate_bootstrap(v) == pytest.approx((0.2, 0.1, 0.3))
    # One run: an image bootstrap of a mean, as scipy's percentile bootstrap gives it.
    wrong = (np.random.default_rng(3).random(500) < 0.25).astype(float)
    mean, lo, hi = stats.replicate_bootstrap(wrong[None, :], n_boot=4_000)
    ref = sps.bootstrap((wrong,), np.mean, n_resamples=4_000, method="percentile",
                        random_state=np.random.default_rng(1)).confidence_interval
    assert mean == pytest.approx(wrong.mean()) and lo == pytest.approx(ref.low, abs=0.006)
    assert hi == pytest.approx(ref.high, abs=0.006)
    # All correct in every run (ties everywhere): a zero-width interval at 0.
    assert stats.replicate_bootstrap(np.zeros((3, 100))) == (0.0, 0.0, 0.0)
    # Both levels add up: wider than the images alone or the runs alone.
    runs = np.stack([(np.random.default_rng(s).random(500) < p).astype(float) for s, p in ((0, 0.2), (1, 0.3), (2, 0.25))])
    _, lo3, hi3 = stats.replicate_bootstrap(runs)
    _, lo1, hi1 = stats.replicate_bootstrap(runs[:1])
    assert hi3 - lo3 > hi1 - lo1
    with pytest.raises(ValueError, match="non-empty"):
        stats.replicate_bootstrap(np.zeros(5))

"""Is a difference real? Intervals, paired tests and error consistency on per-image outcomes.

Pure functions on counts or boolean arrays (numpy only). Every model is evaluated on the same
images, so two error rates are *paired*: their difference is judged on the images where the two
models disagree (McNemar; a bootstrap over images), not as if the samples were independent.

* :func:`clopper_pearson`, :func:`wilson`: a 95 % interval for one error rate (k errors of n);
* :func:`paired_bootstrap_diff`: the difference of two error rates over the same images with a
  percentile interval from resampling images (also a drop: shifted minus clean, same model);
* :func:`replicate_bootstrap`: a mean over seed replicates and images with an interval that
  resamples both the runs and the images (rows aggregated over n > 1 runs);
* :func:`seg_bootstrap`: mIoU and pixel accuracy of a segmentation set with percentile intervals
  from resampling its images' per-class counts; :func:`independent_diff`: the interval of a
  difference of two such values measured on *different* images (a cross-domain drop);
* :func:`mcnemar_exact`: the exact two-sided McNemar p-value (binomial on the discordant pairs);
* :func:`holm`: Holm's step-down adjustment of several p-values;
* :func:`error_consistency`: Cohen's kappa of two models' correctness (Geirhos et al. 2020).

Rates are fractions in [0, 1] here; callers multiply by 100 for percentages.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

LEVEL = 0.95


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


@lru_cache(maxsize=8)
def _log_factorials(n: int) -> np.ndarray:
    """log(i!) for i = 0..n, each from lgamma (a running sum of logs drifts by ~1e-9 at n = 50k)."""
    return np.array([math.lgamma(i + 1) for i in range(n + 1)])


def _log_binom_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = i) for i = 0..n, X ~ Binomial(n, p), with 0 < p < 1."""
    logfact = _log_factorials(n)
    i = np.arange(n + 1)
    return logfact[n] - logfact[i] - logfact[n - i] + i * np.log(p) + (n - i) * np.log1p(-p)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p) (summed in log space: exact enough for n in the millions)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = _log_binom_pmf(n, p)[: k + 1]
    top = logs.max()
    return float(min(1.0, np.exp(top) * np.exp(logs - top).sum()))


def _bisect(f, lo: float, hi: float, iters: int = 80) -> float:
    """The root of an increasing ``f`` on [lo, hi] (f(lo) <= 0 <= f(hi))."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a rate with ``k`` events in ``n`` trials.

    Lower bound: the p with P(X >= k) = alpha/2; upper: the p with P(X <= k) = alpha/2; 0 and 1
    at the edges (k = 0, k = n). Conservative: covers at least ``level`` for every true rate.
    """
    _check_counts(k, n)
    if n == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2
    # P(X >= k) grows with p; P(X <= k) falls with p.
    lo = 0.0 if k == 0 else _bisect(lambda p: (1.0 - binom_cdf(k - 1, n, p)) - a, 0.0, 1.0)
    hi = 1.0 if k == n else _bisect(lambda p: a - binom_cdf(k, n, p), 0.0, 1.0)
    return lo, hi


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a rate with ``k`` events in ``n`` trials (never outside [0, 1])."""
    _check_counts(k, n)
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


@dataclass(frozen=True)
class PairedDiff:
    """``diff`` = error(b) - error(a) over the same images, with its bootstrap interval (fractions)."""

    diff: float
    lo: float
    hi: float
    b_only_wrong: int  # images a gets right and b misses
    a_only_wrong: int  # images b gets right and a misses
    n: int


def _paired(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    return a, b


def paired_bootstrap_diff(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray,
                          n_boot: int = 10_000, level: float = LEVEL, seed: int = 0) -> PairedDiff:
    """error(b) - error(a) over the same images, with a percentile bootstrap interval over images.

    Resampling n images with replacement only changes how many of the resampled images are
    discordant one way or the other, so the replicates are drawn as multinomial counts of the
    three kinds of image (only b wrong, only a wrong, same outcome): the same distribution as
    resampling image indices, in O(n_boot) memory. Seeded: the same inputs give the same interval.
    """
    a, b = _paired(correct_a, correct_b)
    n = a.size
    b_only = int(np.count_nonzero(a & ~b))
    a_only = int(np.count_nonzero(b & ~a))
    if n == 0:
        return PairedDiff(float("nan"), float("nan"), float("nan"), 0, 0, 0)
    diff = (b_only - a_only) / n
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [b_only / n, a_only / n, 1.0 - (b_only + a_only) / n], size=n_boot)
    reps = (draws[:, 0] - draws[:, 1]) / n
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return PairedDiff(diff, float(lo), float(hi), b_only, a_only, n)


def replicate_bootstrap(values: np.ndarray, n_boot: int = 2_000, level: float = LEVEL, seed: int = 0,
                        chunk: int = 100) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of ``values`` [runs, images] (e.g. 1 - correct: an error; correct under
    the reference minus correct under the shift: a drop), the mean over runs of the mean over
    images, with a percentile interval from a two-level bootstrap: each replicate draws the runs
    with replacement and, once for all of them (the runs saw the same images), the images.

    Image draws are multinomial weights, ``chunk`` replicates at a time, so memory stays
    ``chunk x images`` for any number of images. Seeded: the same inputs give the same interval.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or not v.size:
        raise ValueError(f"replicate_bootstrap needs a non-empty [runs, images] array, got shape {v.shape}")
    runs, n = v.shape
    rng = np.random.default_rng(seed)
    reps = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=b)  # [b, images]
        per_run = v @ weights.T / n  # [runs, b]: each run's mean over the drawn images
        picks = rng.integers(0, runs, size=(b, runs))  # the drawn runs of each replicate
        reps.append(per_run[picks, np.arange(b)[:, None]].mean(axis=1))
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(np.concatenate(reps), [tail, 100 - tail])
    return float(v.mean()), float(lo), float(hi)


SEG_METRICS = ("miou", "pixel_acc")


def seg_metrics_of(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """mIoU and pixel accuracy (fractions) of per-class totals ``[..., C]``, vectorised over the
    leading axes: IoU_c = tp / (gt + pred - tp), NaN where that union is 0 (a class absent from the
    ground truth and the predictions), mIoU the mean of the non-NaN IoUs (NaN if none), pixel
    accuracy sum(tp) / sum(gt) (as :func:`dgbench.metrics.segmentation.metrics_from_counts`)."""
    tp, gt, pred = (np.asarray(a, dtype=np.float64) for a in (tp, gt, pred))
    union = gt + pred - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
    k = present.sum(axis=-1)
    total = gt.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = np.where(k > 0, iou.sum(axis=-1) / np.maximum(k, 1), np.nan)
        acc = np.where(total > 0, tp.sum(axis=-1) / np.where(total > 0, total, 1), np.nan)
    return {"miou": miou, "pixel_acc": acc}


def seg_replicates(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray, n_boot: int = 2_000, seed: int | Sequence[int] = 0,
                   chunk: int = 250) -> dict[str, np.ndarray]:
    """``n_boot`` bootstrap replicates of mIoU and pixel accuracy (fractions) of a set of images.

    ``tp``, ``gt``, ``pred``: each image's per-class counts ``[images, C]``
    (:class:`dgbench.metrics.outcomes.SegImageCounts`). A replicate draws ``images`` images with
    replacement (``rng.integers(0, images, (chunk, images))``, ``chunk`` replicates at a time from
    ``default_rng(seed)``), sums their counts and recomputes the metrics from the sums, as the set's
    own numbers are computed from its summed confusion matrix. The sums are one matrix product of
    the draws' multiplicities with the counts (exact in float64 below 2**53 pixels).
    """
    counts = np.stack([np.asarray(a, dtype=np.float64) for a in (tp, gt, pred)], axis=-1)  # [images, C, 3]
    n, c = counts.shape[:2]
    if n == 0:
        raise ValueError("seg_replicates needs at least one image")
    flat = counts.reshape(n, c * 3)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {m: [] for m in SEG_METRICS}
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        mult = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        sums = (mult.astype(np.float64) @ flat).reshape(b, c, 3)
        for m, v in seg_metrics_of(sums[..., 0], sums[..., 1], sums[..., 2]).items():
            out[m].append(v)
    return {m: np.concatenate(v) for m, v in out.items()}


def percentile_interval(reps: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates left out; NaNs if all are)."""
    r = np.asarray(reps, dtype=np.float64)
    r = r[~np.isnan(r)]
    if not r.size:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(r, [tail, 100 - tail])
    return float(lo), float(hi)


def seg_bootstrap(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray, n_boot: int = 2_000, level: float = LEVEL,
                  seed: int | Sequence[int] = 0) -> dict[str, tuple[float, float, float]]:
    """``{"miou": (value, lo, hi), "pixel_acc": (...)}`` (fractions): each metric of the images'
    summed counts with the percentile interval of :func:`seg_replicates`."""
    value = seg_metrics_of(*(np.asarray(a).sum(axis=0) for a in (tp, gt, pred)))
    reps = seg_replicates(tp, gt, pred, n_boot=n_boot, seed=seed)
    return {m: (float(value[m]), *percentile_interval(reps[m], level)) for m in SEG_METRICS}


def independent_diff(reps_a: np.ndarray, reps_b: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``a - b`` from bootstrap replicates of ``a`` and of ``b`` drawn
    independently (the two values were measured on different images, so nothing pairs them):
    replicate i of the difference is ``reps_a[i] - reps_b[i]``. Use different seeds for the two."""
    a, b = np.asarray(reps_a, dtype=np.float64), np.asarray(reps_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"need as many replicates of each side, got {a.shape} and {b.shape}")
    return percentile_interval(a - b, level)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts ``b`` and ``c``.

    Under the null each discordant image is equally likely to go either way, so the smaller count
    is Binomial(b + c, 1/2): p = min(1, 2 P(X <= min(b, c))). No discordant pair: p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    if b + c == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(b, c), b + c, 0.5))


def mcnemar(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> float:
    """:func:`mcnemar_exact` of two models' per-image correctness."""
    a, b = _paired(correct_a, correct_b)
    return mcnemar_exact(int(np.count_nonzero(a & ~b)), int(np.count_nonzero(b & ~a)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order.

    The i-th smallest p (0-based) is multiplied by (m - i), capped at 1, and made monotone so an
    adjusted p never falls below that of a smaller raw p. NaN stays NaN and is not counted in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out[order] = np.maximum.accumulate(scaled)
    return out.tolist()


def error_consistency(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray) -> float:
    """Cohen's kappa of two models' per-image correctness (Geirhos et al. 2020).

    Observed consistency: the fraction of images both get right or both get wrong; expected from
    the accuracies alone: p_a p_b + (1 - p_a)(1 - p_b); kappa = (obs - exp) / (1 - exp). NaN when
    expected consistency is 1 (a model all right or all wrong): kappa is undefined there.
    """
    a, b = _paired(correct_a, correct_b)
    if a.size == 0:
        return float("nan")
    pa, pb = a.mean(), b.mean()
    observed = float(np.mean(a == b))
    expected = float(pa * pb + (1 - pa) * (1 - pb))
    if expected >= 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)

"""95 % intervals for the cells of a results table (``dgbench table --intervals``).

Adds ``m_lo``/``m_hi`` and ``m_drop_lo``/``m_drop_hi`` columns to a summary frame, for the
top-k error metrics of single-run rows (n = 1):

* an error: the Wilson score interval of k wrong of n images (both integers are recovered
  exactly from the record: error = 100 (1 - correct / n));
* a drop: the paired bootstrap interval over images of shifted minus reference error of the
  same model, from the two records' per-image outcomes (NaN where a record has none).

Rows aggregated over several runs (seeds, n > 1) get a two-level bootstrap interval instead, for
the error and the drop alike: the runs and the images resampled together
(:func:`dgbench.metrics.stats.replicate_bootstrap`), where every run kept per-image outcomes.

Segmentation rows (cross-domain mIoU and pixel accuracy) get theirs from :mod:`.seg_intervals`.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import stats
from . import outcomes
from .paired import N_BOOT
from .seg_intervals import CAPTION as SEG_CAPTION
from .seg_intervals import METRICS as SEG_METRICS
from .seg_intervals import add_seg_intervals

METRIC_K = {"top1_err": 1, "top5_err": 5}
N_REPLICATE = 2_000
# No letters in brackets: rich would read "[a, b]" as markup.
CAPTION = ("; in brackets: the error's 95 % Wilson interval, and the drop's paired bootstrap 95 % interval over "
           f"images ({N_BOOT:,} resamples; where both records kept per-image outcomes); where n > 1, both from "
           f"resampling the runs and the images together ({N_REPLICATE:,} resamples)")
_ROW = ("dataset", "protocol", "model", "model_kwargs", "shift")


def _records_by_seed(frame: pd.DataFrame, records: dict[str, dict[str, Any]]) -> dict[tuple, dict[Any, dict[str, Any]]]:
    """The latest record of each seed of each (dataset, protocol, model, kwargs, shift)."""
    out: dict[tuple, dict[Any, dict[str, Any]]] = {}
    for _, row in frame.sort_values("order").iterrows():
        rec = records.get(row["key"])
        if rec is not None:
            out.setdefault(tuple("" if row[c] is None else str(row[c]) for c in _ROW), {})[rec.get("seed")] = rec
    return out


def _latest_records(frame: pd.DataFrame, records: dict[str, dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The latest record of each (dataset, protocol, model, kwargs, shift) of a records frame."""
    out: dict[tuple, dict[str, Any]] = {}
    for _, row in frame.sort_values("order").iterrows():
        rec = records.get(row["key"])
        if rec is not None:
            out[tuple("" if row[c] is None else str(row[c]) for c in _ROW)] = rec
    return out


def replicate_intervals(root: Any, runs: dict[Any, dict[str, Any]], refs: dict[Any, dict[str, Any]] | None,
                        k: int) -> tuple[float, float, float, float]:
    """(error lo, hi, drop lo, hi) in percent of a row averaged over runs: the runs and the images
    resampled together; NaN where a run (or its reference run of the same seed) has no outcomes."""
    nan4 = (math.nan,) * 4
    got = {s: outcomes.read(root, r["protocol"], r["key"]) for s, r in runs.items()}
    if any(g is None for g in got.values()) or len({g[1] for g in got.values()}) != 1:
        return nan4
    seeds = sorted(got, key=str)
    both = np.logical_and.reduce([got[s][0].evaluated for s in seeds])
    wrong = np.stack([~got[s][0].correct[k][both] for s in seeds]).astype(float)
    _, lo, hi = stats.replicate_bootstrap(wrong, n_boot=N_REPLICATE)
    drop = (math.nan, math.nan)
    if refs is not None and set(refs) >= set(seeds):
        ref = {s: outcomes.read(root, refs[s]["protocol"], refs[s]["key"]) for s in seeds}
        if all(g is not None and g[1] == got[s][1] for s, g in ref.items()):
            both_ref = both & np.logical_and.reduce([ref[s][0].evaluated for s in seeds])
            diff = np.stack([ref[s][0].correct[k][both_ref].astype(float) - got[s][0].correct[k][both_ref]
                             for s in seeds])
            drop = stats.replicate_bootstrap(diff, n_boot=N_REPLICATE)[1:]
    return 100 * lo, 100 * hi, 100 * drop[0], 100 * drop[1]


def error_interval(err_pct: float, n: int) -> tuple[float, float]:
    """Wilson 95 % interval (percent) of an error rate stated in percent of ``n`` images."""
    if not n or err_pct is None or math.isnan(err_pct):
        return math.nan, math.nan
    wrong = round(err_pct / 100.0 * n)
    lo, hi = stats.wilson(wrong, n)
    return 100 * lo, 100 * hi


def drop_interval(root: Any, ref: dict[str, Any], rec: dict[str, Any], k: int) -> tuple[float, float]:
    """Paired bootstrap 95 % interval (points) of ``rec``'s error minus ``ref``'s, or NaNs."""
    got = [outcomes.read(root, r["protocol"], r["key"]) for r in (ref, rec)]
    if any(g is None for g in got) or got[0][1] != got[1][1]:
        return math.nan, math.nan
    (oa, _), (ob, _) = got
    both = oa.evaluated & ob.evaluated
    d = stats.paired_bootstrap_diff(oa.correct[k][both], ob.correct[k][both], n_boot=N_BOOT)
    return 100 * d.lo, 100 * d.hi


def add_intervals(summary: pd.DataFrame, frame: pd.DataFrame, records: dict[str, dict[str, Any]],
                  root: str | os.PathLike) -> pd.DataFrame:
    """``summary`` with interval columns for its top-k error cells (see the module docstring) and
    its segmentation cells (mIoU, pixel accuracy: :mod:`.seg_intervals`)."""
    if frame.empty or "order" not in frame.columns:  # nothing measured (a --with-paper table only)
        return summary
    out = summary.copy()
    _add_error_intervals(out, frame, records, root)
    add_seg_intervals(out, frame, records, root)
    return out


def caption(both: pd.DataFrame) -> str:
    """The footer's word on the intervals a table's rows carry: classification, segmentation or both."""
    def shown(metrics: Any) -> bool:
        return any(f"{m}_lo" in both.columns and both[f"{m}_lo"].notna().any() for m in metrics)

    return (CAPTION if shown(METRIC_K) else "") + (SEG_CAPTION if shown(SEG_METRICS) else "")


def _add_error_intervals(out: pd.DataFrame, frame: pd.DataFrame, records: dict[str, dict[str, Any]],
                         root: str | os.PathLike) -> None:
    """Fill ``out``'s interval columns of its top-k error cells, in place."""
    by_seed = _records_by_seed(frame, records)
    metrics = [m for m in METRIC_K if m in out.columns]
    for col in [f"{m}{s}" for m in metrics for s in ("_lo", "_hi", "_drop_lo", "_drop_hi")]:
        out[col] = math.nan
    for i, row in out.iterrows():
        runs = by_seed.get(tuple(str(row[c]) for c in _ROW), {})
        if not runs or row.get("task") != "classification" or row.get("n") != len(runs):
            continue
        refs = by_seed.get(tuple(str(row[c]) for c in _ROW[:-1]) + (str(row["reference"]),)) if row["reference"] else None
        for m in metrics:
            if len(runs) > 1:
                out.loc[i, [f"{m}{s}" for s in ("_lo", "_hi", "_drop_lo", "_drop_hi")]] = replicate_intervals(
                    root, runs, refs, METRIC_K[m])
                continue
            rec = next(iter(runs.values()))
            out.loc[i, [f"{m}_lo", f"{m}_hi"]] = error_interval(row[m], int(rec.get("num_samples") or 0))
            ref = refs.get(rec.get("seed")) if refs else None  # the reference run of the same seed
            if ref is not None:
                out.loc[i, [f"{m}_drop_lo", f"{m}_drop_hi"]] = drop_interval(root, ref, rec, METRIC_K[m])

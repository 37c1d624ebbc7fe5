"""95 % intervals for the cells of an appearance table (``dgbench table --intervals``).

Adds ``m_lo``/``m_hi`` and ``m_drop_lo``/``m_drop_hi`` columns to a summary frame, for the
top-k error metrics of single-run rows (n = 1):

* an error: the Wilson score interval of k wrong of n images (both integers are recovered
  exactly from the record: error = 100 (1 - correct / n));
* a drop: the paired bootstrap interval over images of shifted minus reference error of the
  same model, from the two records' per-image outcomes (NaN where a record has none).

Rows aggregated over several runs (seeds) keep mean ± standard error and get no interval here.
"""
from __future__ import annotations

import math
import os
from typing import Any

import pandas as pd

from ..metrics import stats
from . import outcomes
from .paired import N_BOOT

METRIC_K = {"top1_err": 1, "top5_err": 5}
# No letters in brackets: rich would read "[a, b]" as markup.
CAPTION = ("; in brackets: the error's 95 % Wilson interval, and the drop's paired bootstrap 95 % interval over "
           f"images ({N_BOOT:,} resamples; where both records kept per-image outcomes); none where n > 1")
_ROW = ("dataset", "protocol", "model", "model_kwargs", "shift")


def _latest_records(frame: pd.DataFrame, records: dict[str, dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The latest record of each (dataset, protocol, model, kwargs, shift) of a records frame."""
    out: dict[tuple, dict[str, Any]] = {}
    for _, row in frame.sort_values("order").iterrows():
        rec = records.get(row["key"])
        if rec is not None:
            out[tuple("" if row[c] is None else str(row[c]) for c in _ROW)] = rec
    return out


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
    """``summary`` with interval columns for its single-run top-k error cells (see the module docstring)."""
    if frame.empty or "order" not in frame.columns:  # nothing measured (a --with-paper table only)
        return summary
    out = summary.copy()
    latest = _latest_records(frame, records)
    metrics = [m for m in METRIC_K if m in out.columns]
    for col in [f"{m}{s}" for m in metrics for s in ("_lo", "_hi", "_drop_lo", "_drop_hi")]:
        out[col] = math.nan
    for i, row in out.iterrows():
        rec = latest.get(tuple(str(row[c]) for c in _ROW))
        if rec is None or row.get("n") != 1 or row.get("task") != "classification":
            continue
        ref = latest.get(tuple(str(row[c]) for c in _ROW[:-1]) + (str(row["reference"]),)) if row["reference"] else None
        for m in metrics:
            out.loc[i, [f"{m}_lo", f"{m}_hi"]] = error_interval(row[m], int(rec.get("num_samples") or 0))
            if ref is not None:
                out.loc[i, [f"{m}_drop_lo", f"{m}_drop_hi"]] = drop_interval(root, ref, rec, METRIC_K[m])
    return out

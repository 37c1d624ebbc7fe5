"""95 % intervals of a published leaderboard, from the per-image outcomes shipped beside it
(``<stem>.outcomes.json``, :mod:`.leaderboard_outcomes`).

One computation serves the leaderboard's Markdown page (the brackets of ``dgbench table``, via
:func:`add_sidecar_intervals`) and its site page (hover text, :mod:`.site_stats`):

* an error: the Wilson score interval of the images a row gets wrong among those it evaluated;
* a drop: the paired bootstrap interval over images of the row's error minus its reference
  row's (same model), over the images both evaluated; seeded, so a page renders to the same bytes.

The CSV holds the published numbers; a sidecar row lends intervals only to a single-run row whose
published error it reproduces (and, for the drop, whose reference row's error it reproduces too),
so a stale sidecar never dresses another run's numbers.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..metrics import stats
from .leaderboard_outcomes import Sidecar, load_sidecar, printed_equal, sidecar_path
from .paired import N_BOOT

METRIC_K = {"top1_err": 1, "top5_err": 5}


@dataclass(frozen=True)
class RowIntervals:
    """One sidecar row's error (percent) and 95 % intervals (percent; the drop's in points, NaN
    without a reference row); ``ref_err`` is the reference row's error, NaN without one."""

    n: int
    err: float
    lo: float
    hi: float
    ref_err: float = math.nan
    drop_lo: float = math.nan
    drop_hi: float = math.nan


def row_intervals(side: Sidecar, key: tuple[str, str, str], reference: str, k: int) -> RowIntervals | None:
    """The intervals of sidecar row ``key`` = (model, kwargs, condition) for top-``k`` error, its
    drop from the same model's ``reference`` condition ("" for none); None without that row or images."""
    got = side.correct(key, k)
    if got is None or not got[0].any():
        return None
    evaluated, correct = got
    n, wrong = int(evaluated.sum()), int((evaluated & ~correct).sum())
    lo, hi = stats.wilson(wrong, n)
    out = RowIntervals(n, 100 * wrong / n, 100 * lo, 100 * hi)
    ref = side.correct((*key[:2], reference), k) if reference and reference != key[2] else None
    if ref is None:
        return out
    both = evaluated & ref[0]
    if not both.any():
        return out
    ref_err = 100 * (ref[0] & ~ref[1]).sum() / ref[0].sum()
    d = stats.paired_bootstrap_diff(ref[1][both], correct[both], n_boot=N_BOOT)
    return RowIntervals(n, out.err, out.lo, out.hi, float(ref_err), 100 * d.lo, 100 * d.hi)


def add_sidecar_intervals(summary: pd.DataFrame, side: Sidecar) -> pd.DataFrame:
    """A leaderboard's summary frame (:func:`.published.leaderboard_to_summary`) with the interval
    columns ``dgbench table`` shows (``m_lo``/``m_hi``, ``m_drop_lo``/``m_drop_hi``) for its
    single-run top-k error cells that ``side`` reproduces; NaN elsewhere."""
    out = summary.copy()
    metrics = [m for m in METRIC_K if m in out.columns]
    for col in [f"{m}{s}" for m in metrics for s in ("_lo", "_hi", "_drop_lo", "_drop_hi")]:
        out[col] = math.nan
    for i, row in out.iterrows():
        if row.get("task") != "classification" or row.get("n") != 1:
            continue
        key = (str(row["model"]), str(row["model_kwargs"]), str(row["shift"]))
        for m in metrics:
            got = row_intervals(side, key, str(row["reference"] or ""), METRIC_K[m])
            if got is None or not printed_equal(got.err, row[m]):
                continue
            out.loc[i, [f"{m}_lo", f"{m}_hi"]] = got.lo, got.hi
            if not math.isnan(got.drop_lo) and printed_equal(got.err - got.ref_err, row[f"{m}_drop"]):
                out.loc[i, [f"{m}_drop_lo", f"{m}_drop_hi"]] = got.drop_lo, got.drop_hi
    return out


def footer(side_name: str) -> str:
    """The page's line naming where its intervals come from and how they are computed."""
    return (f"_95 % intervals in brackets, computed from the per-image correctness in [`{side_name}`]"
            f"({side_name}): for an error, the Wilson score interval; for a drop, a paired bootstrap over "
            f"the images ({N_BOOT:,} resamples, seed 0). Rows that average several runs, or whose published "
            "error that file does not reproduce, show none._\n")


def page_intervals(summary: pd.DataFrame, csv_path: str | os.PathLike | None) -> tuple[pd.DataFrame, str]:
    """``(summary with intervals, footer line)`` for the page of the leaderboard at ``csv_path``
    when a sidecar lies beside it and lends an interval; else ``(summary, "")`` unchanged."""
    side = load_sidecar(csv_path) if csv_path else None
    if side is None:
        return summary, ""
    got = add_sidecar_intervals(summary, side)
    if not any(c.endswith("_lo") and got[c].notna().any() for c in got.columns):
        return summary, ""
    return got, footer(sidecar_path(Path(csv_path)).name)

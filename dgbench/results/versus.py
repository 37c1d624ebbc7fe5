"""``dgbench table --vs MODEL``: mark the errors that differ significantly from a reference model's.

Every model of an appearance table saw the same images, so each error cell is compared with the
reference model's error under the same condition by the exact McNemar test on the images one
gets right and the other misses (:func:`dgbench.metrics.stats.mcnemar`). The p-values of one
table (a dataset, protocol and metric: every other model under every condition) are Holm-adjusted
together; a cell whose adjusted p is below :data:`ALPHA` is marked ``*``. Adds ``m_vs_p`` (the
adjusted p), ``vs_model`` and ``vs_tests`` columns to a summary frame.
"""
from __future__ import annotations

import math
import os
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from ..metrics import stats
from . import outcomes
from .intervals import METRIC_K, _ROW, _latest_records

ALPHA = 0.05
MARK = "*"


def caption(model: str, tests: int) -> str:
    return (f"; {MARK} differs from {model} (exact McNemar on the images one gets right and the other misses, "
            f"Holm-adjusted over the table's {tests} comparisons, p < {ALPHA})")


def _p(root: Any, ref: dict[str, Any], rec: dict[str, Any], k: int) -> float:
    got = [outcomes.read(root, r["protocol"], r["key"]) for r in (ref, rec)]
    if any(g is None for g in got) or got[0][1] != got[1][1] or len(got[0][0]) != len(got[1][0]):
        return math.nan
    (oa, _), (ob, _) = got
    both = oa.evaluated & ob.evaluated
    return stats.mcnemar(oa.correct[k][both], ob.correct[k][both])


def add_versus(summary: pd.DataFrame, frame: pd.DataFrame, records: dict[str, dict[str, Any]],
               root: str | os.PathLike, model: str) -> pd.DataFrame:
    """``summary`` with ``m_vs_p`` per top-k error (see the module docstring)."""
    if frame.empty or "order" not in frame.columns:
        return summary
    if model not in set(summary["model"]):
        raise DgbenchError(f"--vs {model}: no stored result of that model in these tables; "
                           f"pick one of {', '.join(sorted(set(summary['model'].dropna())))}")
    out = summary.copy()
    latest = _latest_records(frame, records)
    metrics = [m for m in METRIC_K if m in out.columns]
    out["vs_model"], out["vs_tests"] = model, 0
    for m in metrics:
        out[f"{m}_vs_p"] = math.nan
    for (dataset, protocol), group in out.groupby(["dataset", "protocol"]):
        for m in metrics:
            raw = {}
            for i, row in group.iterrows():
                key = tuple("" if row[c] is None else str(row[c]) for c in _ROW)
                ref = latest.get((key[0], key[1], model, "", key[4]))
                rec = latest.get(key)
                if (row["model"] != model and rec is not None and ref is not None and row.get("n") == 1
                        and row.get("task") == "classification"):  # segmentation outcomes are counts
                    raw[i] = _p(root, ref, rec, METRIC_K[m])
            tested = [i for i, p in raw.items() if not math.isnan(p)]
            out.loc[tested, f"{m}_vs_p"] = stats.holm([raw[i] for i in tested])
            out.loc[group.index, "vs_tests"] = len(tested)
    return out

"""95 % intervals for the segmentation cells of a cross-domain table (``dgbench table``).

Adds ``m_lo``/``m_hi`` and ``m_drop_lo``/``m_drop_hi`` (percent, points) for mIoU and pixel
accuracy to the single-run segmentation rows of a summary frame, from each record's per-image
counts (:mod:`.outcomes`, segmentation payload):

* a cell's mIoU: the percentile bootstrap over its test images (resample the images, sum their
  per-class counts, recompute; :func:`dgbench.metrics.stats.seg_replicates`);
* a drop (in-domain minus cross-domain, ``A->A`` minus ``A->B``): the two cells were measured on
  *different* test sets, so no image pairs them; each cell is bootstrapped on its own (different
  seeds) and replicate i of the drop is the difference of the two cells' replicate i
  (:func:`dgbench.metrics.stats.independent_diff`).

NaN where a record (or its in-domain reference) kept no counts, and for rows averaged over
several runs (n > 1).
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from ..metrics import stats
from . import outcomes
from .catalogue import degradation_sign
from .frame import as_text, table_datasets

N_BOOT = 2_000
METRICS = stats.SEG_METRICS
_CELL = ("dataset", "protocol", "model", "model_kwargs", "train_domain", "test_domain")
# Bootstrap seeds: a cell's own interval, and the cross cell's side of a drop (independent of the
# in-domain cell's draws, which are its own interval's).
OWN_SEED, DROP_SEED = 0, 1
# No letters in brackets: rich would read "[a, b]" as markup.
CAPTION = (f"; in brackets: the 95 % percentile bootstrap interval over the test images ({N_BOOT:,} resamples of "
           "their per-image confusion counts, where the records kept them); for a drop, the in-domain and the "
           "cross-domain cell resampled independently, as they are measured on different test sets")


def _cells(frame: pd.DataFrame, records: dict[str, dict[str, Any]]) -> dict[tuple, dict[Any, dict[str, Any]]]:
    """The latest segmentation record of each seed of each table cell, keyed as the summary rows
    (by the table's dataset: a pair's name)."""
    seg = frame[frame["task"] == "segmentation"]
    if seg.empty:
        return {}
    seg = seg.assign(dataset=table_datasets(seg)[0]).sort_values("order")
    out: dict[tuple, dict[Any, dict[str, Any]]] = {}
    for _, row in seg.iterrows():
        rec = records.get(row["key"])
        if rec is not None:
            out.setdefault(tuple(as_text(row[c]) for c in _CELL), {})[rec.get("seed")] = rec
    return out


class _Replicates:
    """Bootstrap replicates of each record's metrics, computed once per (record, seed)."""

    def __init__(self, root: str | os.PathLike):
        self.root = root
        self.cache: dict[tuple[str, int], dict[str, np.ndarray] | None] = {}

    def of(self, rec: dict[str, Any], seed: int) -> dict[str, np.ndarray] | None:
        key = (rec["key"], seed)
        if key not in self.cache:
            got = outcomes.read(self.root, rec["protocol"], rec["key"])
            counts = got[0] if got is not None else None
            if not isinstance(counts, outcomes.SegImageCounts) or not counts.evaluated.any():
                self.cache[key] = None
            else:
                rows = counts.evaluated
                self.cache[key] = stats.seg_replicates(counts.tp[rows], counts.gt[rows], counts.pred[rows],
                                                       n_boot=N_BOOT, seed=seed)
        return self.cache[key]


def _row_intervals(reps: _Replicates, rec: dict[str, Any], ref: dict[str, Any] | None,
                   metrics: list[str]) -> dict[str, float]:
    """The interval columns of one cell (see the module docstring), in percent."""
    cols: dict[str, float] = {}
    own = reps.of(rec, OWN_SEED)
    if own is None:
        return cols
    for m in metrics:
        cols[f"{m}_lo"], cols[f"{m}_hi"] = (100 * v for v in stats.percentile_interval(own[m]))
    ref_reps = reps.of(ref, OWN_SEED) if ref is not None else None
    if ref_reps is None:
        return cols
    cross = reps.of(rec, DROP_SEED)
    for m in metrics:
        sign = degradation_sign(m)  # the table's drop: a loss reads positive
        lo, hi = stats.independent_diff(sign * cross[m], sign * ref_reps[m])  # type: ignore[index]
        cols[f"{m}_drop_lo"], cols[f"{m}_drop_hi"] = 100 * lo, 100 * hi
    return cols


def add_seg_intervals(out: pd.DataFrame, frame: pd.DataFrame, records: dict[str, dict[str, Any]],
                      root: str | os.PathLike) -> None:
    """Fill ``out``'s (a summary frame) interval columns of its single-run segmentation rows, in place."""
    cells = _cells(frame, records)
    metrics = [m for m in METRICS if m in out.columns]
    if not cells or not metrics:
        return
    for col in [f"{m}{s}" for m in metrics for s in ("_lo", "_hi", "_drop_lo", "_drop_hi")]:
        if col not in out.columns:
            out[col] = math.nan
    reps = _Replicates(root)
    for i, row in out.iterrows():
        key = tuple(as_text(row.get(c)) for c in _CELL)
        runs = cells.get(key, {})
        if row.get("task") != "segmentation" or len(runs) != 1 or row.get("n") != 1:
            continue
        (seed, rec), = runs.items()
        ref = cells.get(key[:-1] + (as_text(row["reference"]),), {}).get(seed) if as_text(row.get("reference")) else None
        for col, v in _row_intervals(reps, rec, ref, metrics).items():
            out.loc[i, col] = v

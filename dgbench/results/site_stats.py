"""The leaderboard site's statistics, from the per-image outcomes shipped beside a leaderboard
(:mod:`.leaderboard_outcomes`): each measured error's 95 % intervals as the cell's hover text, and
an error-consistency heat map (Cohen's kappa between every two models, per condition)."""
from __future__ import annotations

import dataclasses
import itertools
import math

from ..metrics import stats
from .consistency import CAPTION as KAPPA_CAPTION
from .frame import MEASURED, variant_label
from .leaderboard_intervals import METRIC_K, row_intervals
from .leaderboard_outcomes import Sidecar
from .site_model import Cell, Grid


def _title(side: Sidecar, labels, label: str, cond: str, reference: str, k: int, value: str) -> str:
    """The hover text of one cell, or "" when the sidecar does not hold the published value."""
    key = labels.get(label)
    got = None if key is None else row_intervals(side, (*key, cond), reference, k)
    if got is None or f"{got.err:.2f}" != value:  # a stale sidecar lends no interval
        return ""
    text = f"95 % interval {got.lo:.1f}–{got.hi:.1f} (Wilson, {got.n} images)"
    if not math.isnan(got.drop_lo):
        text += f"; drop {got.drop_lo:.1f}–{got.drop_hi:.1f} (paired bootstrap over the images)"
    return text


def with_intervals(grid: Grid, side: Sidecar) -> Grid:
    """``grid`` with each measured top-k error cell's 95 % intervals as its hover text."""
    k = METRIC_K.get(grid.metric)
    if k is None:
        return grid
    labels = {variant_label(m, kw): (m, kw) for m, kw, _ in side.rows}
    for row in grid.rows:
        if row.source != MEASURED:
            continue
        row.cells = [dataclasses.replace(c, title=_title(side, labels, row.label, cond, grid.reference, k, c.value))
                     if c is not None and c.value and (c.n or 1) == 1 else c
                     for c, cond in zip(row.cells, grid.conditions)]
    grid.caption += " Hover a measured error for its 95 % interval (and its drop's)."
    return grid


def consistency_grid(side: Sidecar, conditions: list[str], shade) -> Grid | None:
    """Cohen's kappa of every two models' top-1 correctness per condition, as a heat map."""
    models = sorted({(m, kw) for m, kw, _ in side.rows})
    if len(models) < 2:
        return None
    rows = []
    from .site_model import Row

    for a, b in itertools.combinations(models, 2):
        cells = []
        for cond in conditions:
            ga, gb = side.correct((*a, cond), 1), side.correct((*b, cond), 1)
            if ga is None or gb is None:
                cells.append(None)
                continue
            both = ga[0] & gb[0]
            kappa = stats.error_consistency(ga[1][both], gb[1][both])
            cells.append(Cell("–" if kappa != kappa else f"{kappa:.2f}", "", "", 1,
                              shade=shade(None if kappa != kappa else kappa, 1.0)))
        rows.append(Row(f"{variant_label(*a)} · {variant_label(*b)}", MEASURED, "", cells, None))
    return Grid("kappa", "consistency", conditions, rows, unit="kappa",
                heading="Error consistency (Cohen's kappa, top-1)",
                caption=KAPPA_CAPTION + ". Warmer: the two models fail on more of the same images.")

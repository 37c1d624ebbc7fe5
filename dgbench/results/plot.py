"""``dgbench plot``: the drops as a picture (PNG), for people who would rather look than read.

One panel per (dataset, protocol): grouped bars of each model's drop per shift (appearance) or
per train -> test pair (cross-domain), with standard-error bars where seeds were repeated. Shifts
that form a severity sweep (three or more severities of one family, e.g. ``rgb+10`` ..
``rgb+100``, read from the shift spec's ``family``/``severity`` or from the name) get their own
panel: a robustness curve of drop against severity, one line per model.

Drawn with matplotlib's Agg canvas directly (no pyplot), so it works headless and leaves the
user's matplotlib state alone.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import DgbenchError
from .frame import MEASURED, summarize, variant_label
from . import catalogue
from .tables import METRIC_TITLES, NoResultsError, resolve_metrics

MIN_SWEEP = 3  # severities of one family needed to draw a curve


def _sweeps(g: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Families with at least :data:`MIN_SWEEP` severities in a group, each as its rows."""
    out = {}
    for fam, rows in g[g["family"] != ""].groupby("family", sort=True):
        if rows["severity"].nunique() >= MIN_SWEEP:
            out[fam] = rows
    return out


def _models(g: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(g["model"], g["model_kwargs"])))


def _bars(ax, g: pd.DataFrame, conditions: list[str], cond_of, metric: str, title: str) -> None:
    models = _models(g)
    group = min(0.8, 0.2 * max(len(models), 1))  # a lone model gets a slim bar, not a wall
    width = group / max(len(models), 1)
    x = np.arange(len(conditions))
    for i, (model, kw) in enumerate(models):
        sel = g[(g["model"] == model) & (g["model_kwargs"] == kw)]
        by = {cond_of(r): r for _, r in sel.iterrows()}
        ys = [by[c][f"{metric}_drop"] if c in by else math.nan for c in conditions]
        es = [by[c][f"{metric}_drop_se"] if c in by else math.nan for c in conditions]
        es = [0.0 if math.isnan(e) else e for e in es]
        ax.bar(x - group / 2 + width * (i + 0.5), ys, width, yerr=es if any(es) else None,
               capsize=2, label=variant_label(model, kw))  # error bars only where seeds repeat
    ax.set_xticks(x, conditions, rotation=30 if len(conditions) > 5 else 0, ha="right" if len(conditions) > 5 else "center")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} drop (points)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncols=2)
    ax.grid(axis="y", alpha=0.3)


def _curve(ax, rows: pd.DataFrame, family: str, metric: str, title: str) -> None:
    for model, kw in _models(rows):
        sel = rows[(rows["model"] == model) & (rows["model_kwargs"] == kw)].sort_values("severity")
        se = sel[f"{metric}_drop_se"].fillna(0.0)
        ax.errorbar(sel["severity"], sel[f"{metric}_drop"],
                    yerr=se if (se > 0).any() else None, marker="o", capsize=2,
                    label=variant_label(model, kw))
    ax.set_xlabel(f"severity ({family})")
    ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} drop (points)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot_results(frame: pd.DataFrame, out: str | os.PathLike, metric: str | None = None) -> Path:
    """Draw the drops of a records frame into the PNG ``out``; returns its path."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DgbenchError(f"--out {out}: dgbench plot writes PNG files (name it *.png)")
    summary = summarize(frame)
    summary = summary[summary["source"] == MEASURED] if not summary.empty else summary
    shifted = summary[summary["reference"] != ""] if not summary.empty else summary
    if shifted.empty:
        raise NoResultsError("nothing to plot: no stored result has a drop "
                             "(run a protocol first, e.g. `dgbench run --protocol appearance`)")
    panels = []  # (callable(ax),)
    for (dataset, protocol), g in shifted.groupby(["dataset", "protocol"], sort=True):
        kind = g["kind"].iloc[0]
        metrics = [m for m in catalogue.METRICS if m in g.columns and f"{m}_drop" in g.columns and g[f"{m}_drop"].notna().any()]
        if not metrics:
            continue
        m = resolve_metrics(metric, kind, metrics)[0]
        if kind == "appearance":
            sweeps = _sweeps(g)
            in_sweep = set().union(*(set(r["shift"]) for r in sweeps.values())) if sweeps else set()
            flat = g[~g["shift"].isin(in_sweep)]
            shifts = list(dict.fromkeys(flat.sort_values("order")["shift"]))
            if shifts:
                panels.append(lambda ax, g=flat, s=shifts, m=m, t=f"{dataset} · {protocol}":
                              _bars(ax, g, s, lambda r: r["shift"], m, t))
            for fam, rows in sweeps.items():
                panels.append(lambda ax, r=rows, f=fam, m=m, t=f"{dataset} · {protocol}: {fam} sweep":
                              _curve(ax, r, f, m, t))
        else:
            pairs = list(dict.fromkeys(f"{a}→{b}" for a, b in
                                       zip(g.sort_values("order")["train_domain"], g.sort_values("order")["test_domain"])))
            panels.append(lambda ax, g=g, s=pairs, m=m, t=f"{dataset} · {protocol}":
                          _bars(ax, g, s, lambda r: f"{r['train_domain']}→{r['test_domain']}", m, t))
    if not panels:
        raise NoResultsError("nothing to plot: the stored results carry no drops")
    fig = Figure(figsize=(8, 3.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for draw, ax in zip(panels, axes):
        draw(ax)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out

"""``dgbench plot``: the drops as a picture (PNG), for people who would rather look than read.

One panel per (dataset, protocol): grouped bars of each model's drop per shift (appearance) or
per train -> test pair (cross-domain), with standard-error bars where seeds were repeated. Shifts
that form a severity sweep (three or more severities of one family, e.g. ``rgb+10`` ..
``rgb+100``, read from the shift spec's ``family``/``severity`` or from the name) get their own
panel: a robustness curve of drop against severity, one line per model. Fine-tuning results
(Table 8) are drawn as the metric against the fraction of target data, one line per model.

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
from .kinds import all_kinds, get_kind
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


def _fraction_curve(ax, g: pd.DataFrame, metric: str, title: str) -> None:
    """Fine-tuning (Table 8): the metric against the fraction of target data, one line per model."""
    for model, kw in _models(g):
        sel = g[(g["model"] == model) & (g["model_kwargs"] == kw)].copy()
        sel["x"] = [100 * float(f) for f in sel["fraction"]]
        sel = sel.sort_values("x")
        se = sel[f"{metric}_se"].fillna(0.0)
        ax.errorbar(sel["x"], sel[metric], yerr=se if (se > 0).any() else None, marker="o", capsize=2,
                    label=variant_label(model, kw))
    ax.set_xlabel("target train images used for fine-tuning (%; 0 = source only)")
    ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot_results(frame: pd.DataFrame, out: str | os.PathLike, metric: str | None = None) -> Path:
    """Draw the drops of a records frame into the PNG ``out``; returns its path."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DgbenchError(f"--out {out}: dgbench plot writes PNG files (name it *.png)")
    extra = []  # kinds of other shapes (divergence) draw their own panels
    for kind in all_kinds():
        if kind.hooks is not None:
            frame, mine = kind.hooks.split(frame)
            extra += kind.hooks.panels(mine) if not mine.empty else []
    if extra and frame.empty:  # only such results: their panels side by side (Fig. 5's shape)
        fig = panel_figure(extra, columns=4)
    else:
        fig = drops_figure(summarize(frame), metric, extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out


def panel_figure(panels: list, columns: int = 1) -> Figure:
    """A figure with one axes per drawing function, ``columns`` wide."""
    cols = min(len(panels), columns)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(8, 3.6 * rows) if cols == 1 else (4.2 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for draw, ax in zip(panels, axes):
        draw(ax)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def drops_figure(summary: pd.DataFrame, metric: str | None = None, extra: list | None = None) -> Figure:
    """The drops of a summary frame's measured rows as a figure (the site embeds it too), plus
    the ``extra`` panels (drawing functions of kinds of other shapes) when given."""
    extra = extra or []
    summary = summary[summary["source"] == MEASURED] if not summary.empty else summary
    curve_kinds = [k.name for k in all_kinds() if k.plot_curve]
    curves = summary[summary["kind"].isin(curve_kinds)] if not summary.empty else summary
    shifted = summary[(summary["reference"] != "") & ~summary["kind"].isin(curve_kinds)] if not summary.empty else summary
    if shifted.empty and curves.empty and not extra:
        raise NoResultsError("nothing to plot: no stored result has a drop "
                             "(run a protocol first, e.g. `dgbench run --protocol appearance`)")
    panels = []
    for (dataset, protocol), g in curves.groupby(["dataset", "protocol"], sort=True):
        available = [m for m in catalogue.METRICS if m in g.columns and g[m].notna().any()]
        m = resolve_metrics(metric, g["kind"].iloc[0], available)[0]
        panels.append(lambda ax, g=g, m=m, t=f"{dataset} · {protocol}": _fraction_curve(ax, g, m, t))
    for (dataset, protocol), g in shifted.groupby(["dataset", "protocol"], sort=True):
        whole = summary[(summary["dataset"] == dataset) & (summary["protocol"] == protocol)]  # references too
        panels += _drop_panels(g, f"{dataset} · {protocol}", metric, whole)
    panels += extra
    if not panels:
        raise NoResultsError("nothing to plot: the stored results carry no drops")
    return panel_figure(panels)


def _drop_panels(g: pd.DataFrame, title: str, metric: str | None, whole: pd.DataFrame | None = None) -> list:
    """Bars of each model's drop per condition, and a curve per severity sweep among them."""
    kind = get_kind(g["kind"].iloc[0])
    if kind.panels:  # a kind with a figure of its own (natural shifts: effective robustness)
        from .kinds import resolve

        return resolve(kind.panels)(g if whole is None else whole, title, metric)
    metrics = [m for m in catalogue.METRICS if m in g.columns and f"{m}_drop" in g.columns and g[f"{m}_drop"].notna().any()]
    if not metrics:
        return []
    m = resolve_metrics(metric, kind.name, metrics)[0]
    sweeps = _sweeps(g)  # shifts of a family at three or more severities
    in_sweep = set().union(*(set(r["shift"]) for r in sweeps.values())) if sweeps else set()
    flat = g[~g["shift"].isin(in_sweep)]

    def cond(r: Any) -> str:
        return "→".join(str(r[c]) for c in kind.conditions)

    conditions = list(dict.fromkeys(cond(r) for _, r in flat.sort_values("order").iterrows()))
    panels = [lambda ax: _bars(ax, flat, conditions, cond, m, title)] if conditions else []
    for fam, rows in sweeps.items():
        panels.append(lambda ax, r=rows, f=fam: _curve(ax, r, f, m, f"{title}: {f} sweep"))
    return panels

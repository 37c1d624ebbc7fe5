"""Natural-shift results: the table (clean error beside each test set), and effective robustness.

A ``natural-shifts`` record is one (model, test set): ``dataset`` the clean dataset, ``shift`` the
test set, ``reference`` the clean test set. Its leaderboard, check and site page are the metric
kinds' (one row per model and test set). On top of them:

* **effective robustness** (Taori et al. 2020, "Measuring robustness to natural distribution
  shifts"): per shifted test set, a line fitted by least squares to the models' (logit of clean
  accuracy, logit of shifted accuracy); a model's effective robustness is its shifted accuracy
  minus the fit's prediction at its clean accuracy (points; > 0: more robust than its clean
  accuracy predicts). The fit is over the models the store holds, so it means little with few.
* the figure (``dgbench plot``): per test set, shifted vs clean accuracy on logit axes, the fit,
  y = x, and each point's 95 % Clopper-Pearson intervals on both axes.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.stats import clopper_pearson
from .frame import MEASURED, variant_label
from .kinds import ResultKind
from .tabledata import TableData

KIND = "natural-shifts"
EPS = 1e-4  # accuracies clipped to [EPS, 1 - EPS] before the logit (0 % or 100 % has none)
ER_COLUMNS = ["dataset", "protocol", "test_set", "model", "model_kwargs", "clean_acc", "shifted_acc",
              "predicted_acc", "effective_robustness", "slope", "intercept", "n_models", "clean_n", "shifted_n"]


def logit(p: Any) -> Any:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def expit(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def fit_line(clean_acc: Any, shifted_acc: Any) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through (logit clean, logit shifted), accuracies
    in [0, 1]; NaN when fewer than two distinct clean accuracies."""
    x, y = logit(clean_acc), logit(shifted_acc)
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _rows(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary[(summary["kind"] == KIND) & (summary["source"] == MEASURED)] if not summary.empty else summary
    return s


def effective_robustness(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, protocol, shifted test set, model): accuracies (%), the fit's prediction
    and the effective robustness (points), with the fit's slope/intercept and how many models made it."""
    s = _rows(summary)
    out = []
    for (dataset, protocol), g in s.groupby(["dataset", "protocol"], sort=True):
        clean = {(r["model"], r["model_kwargs"]): r for _, r in g[g["reference"] == ""].iterrows()}
        for test_set, t in g[g["reference"] != ""].groupby("shift", sort=False):
            pairs = [(clean[(r["model"], r["model_kwargs"])], r) for _, r in t.iterrows()
                     if (r["model"], r["model_kwargs"]) in clean]
            if not pairs:
                continue
            ca = np.array([100 - c["top1_err"] for c, _ in pairs]) / 100
            sa = np.array([100 - r["top1_err"] for _, r in pairs]) / 100
            slope, intercept = fit_line(ca, sa)
            pred = expit(slope * logit(ca) + intercept) if not math.isnan(slope) else np.full(len(ca), math.nan)
            for (c, r), a, b, p in zip(pairs, ca, sa, pred):
                out.append([dataset, protocol, test_set, r["model"], r["model_kwargs"], 100 * a, 100 * b, 100 * p,
                            100 * (b - p), slope, intercept, len(pairs), c.get("num_samples", math.nan),
                            r.get("num_samples", math.nan)])
    return pd.DataFrame(out, columns=ER_COLUMNS)


def _f(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2f}"


def er_table(er: pd.DataFrame, dataset: str, protocol: str) -> list[TableData]:
    """Effective robustness as a table: rows models, a column per shifted test set."""
    e = er[(er["dataset"] == dataset) & (er["protocol"] == protocol)]
    if e.empty:
        return []
    sets = list(dict.fromkeys(e["test_set"]))
    models = list(dict.fromkeys(zip(e["model"], e["model_kwargs"])))
    rows = []
    for model, kw in models:
        cells = []
        for ts in sets:
            r = e[(e["model"] == model) & (e["model_kwargs"] == kw) & (e["test_set"] == ts)]
            v = math.nan if r.empty else float(r.iloc[0]["effective_robustness"])
            cells.append("–" if math.isnan(v) else f"{0.0 if abs(v) < 0.005 else v:+.2f}")  # no "-0.00"
        rows.append([variant_label(model, kw), *cells])
    n = int(e["n_models"].max())
    fits = "; ".join(f"{ts}: logit(shifted) = {g.iloc[0]['slope']:.2f}·logit(clean) {g.iloc[0]['intercept']:+.2f}"
                     for ts, g in e.groupby("test_set", sort=False) if not math.isnan(g.iloc[0]["slope"]))
    return [TableData(
        title=f"{dataset} · {protocol}: effective robustness (top-1 accuracy points above the fit)",
        columns=["model", *sets], rows=rows, sources=[MEASURED] * len(rows),
        caption=f"Taori et al. 2020: shifted accuracy minus the prediction of a linear fit in logit space over "
                f"the {n} model(s) stored ({fits or 'no fit: fewer than two models'}); a fit over few, similar "
                "models says little")]


def natural_tables(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str], with_source: bool,
                   measured: pd.DataFrame | None = None, **_: Any) -> list[TableData]:
    """The clean-vs-shifted error table (Table 1's shape, the clean set first) and the effective robustness."""
    from .tables import appearance_table

    tables = appearance_table(both, dataset, protocol, metrics, with_source)
    if measured is not None and not measured.empty and "top1_err" in measured.columns:
        tables += er_table(effective_robustness(measured), dataset, protocol)
    return tables


# ----------------------------------------------------------------------------- figure
def _interval(acc_pct: float, n: Any) -> tuple[float, float]:
    """The 95 % Clopper-Pearson interval of an accuracy (%) of ``n`` images, as logits (NaN: n unknown)."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or int(n) <= 0:
        return math.nan, math.nan
    k = int(round(acc_pct / 100 * int(n)))
    lo, hi = clopper_pearson(k, int(n))
    return float(logit(lo)), float(logit(hi))


def _er_panel(ax: Any, e: pd.DataFrame, title: str) -> None:
    x, y = logit(e["clean_acc"] / 100), logit(e["shifted_acc"] / 100)
    for i, (_, r) in enumerate(e.iterrows()):
        xl, xh = _interval(r["clean_acc"], r["clean_n"])
        yl, yh = _interval(r["shifted_acc"], r["shifted_n"])
        xerr = None if math.isnan(xl) else [[x[i] - xl], [xh - x[i]]]
        yerr = None if math.isnan(yl) else [[y[i] - yl], [yh - y[i]]]
        ax.errorbar([x[i]], [y[i]], xerr=xerr, yerr=yerr, marker="o", linestyle="none", capsize=2,
                    color=f"C{i % 10}", label=variant_label(r["model"], r["model_kwargs"]))
    lo, hi = float(min(x.min(), y.min())) - 0.3, float(max(x.max(), y.max())) + 0.3
    grid = np.linspace(lo, hi, 50)
    ax.plot(grid, grid, linestyle="--", color="grey", linewidth=0.8, label="y = x (no drop)")
    slope, intercept = float(e["slope"].iloc[0]), float(e["intercept"].iloc[0])
    if not math.isnan(slope):
        ax.plot(grid, slope * grid + intercept, color="black", linewidth=1.2,
                label=f"fit over {int(e['n_models'].iloc[0])} models")
    ticks = [t for t in (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9) if lo <= logit(t / 100) <= hi]
    ax.set_xticks(logit(np.array(ticks) / 100), [f"{t:g}" for t in ticks])
    ax.set_yticks(logit(np.array(ticks) / 100), [f"{t:g}" for t in ticks])
    ax.set_xlabel("clean top-1 accuracy (%, logit scale)")
    ax.set_ylabel("shifted top-1 accuracy (%, logit scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def er_panels(g: pd.DataFrame, title: str, metric: str | None = None) -> list:
    """One effective-robustness scatter per shifted test set of a (dataset, protocol) summary group."""
    er = effective_robustness(g)
    return [lambda ax, e=e, ts=ts: _er_panel(ax, e, f"{title}: {ts}") for ts, e in er.groupby("test_set", sort=False)]


# Registered by results.kinds on first use (BUILTIN_ELSEWHERE), so kinds imports nothing of this module.
RESULT_KIND = ResultKind(
    KIND, ("shift",), "shift",
    published={"classification": ("top1_err", "top5_err")},
    shown={"classification": ("top1_err",)},
    aliases={"top1": "top1_err", "top5": "top5_err"}, row_head="test set",
    drop_from="the clean test set", describe="rows: models; columns: test sets (the clean one first)",
    # its leaderboards share the appearance header; its rows are those whose drops are measured
    # from the dataset itself (appearance's are from a shift: origin)
    infer=lambda rec: bool(rec.get("reference")) and rec.get("reference") == rec.get("dataset"),
    table="dgbench.results.natural:natural_tables", panels="dgbench.results.natural:er_panels",
    plot_note="effective robustness: each model's shifted against its clean top-1 accuracy (logit scales), "
              "the line fitted over the models and y = x")

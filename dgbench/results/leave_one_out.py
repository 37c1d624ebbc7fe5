"""Leave-one-domain-out results: DomainBed's table per selection method, its leaderboard and check.

Records (kind ``leave-one-out``) are one training run each; their ``dg_run`` field holds what
:mod:`.model_selection` reads (algorithm, trial, hparam set, held-out domains, evaluations).

* table: one per (dataset, protocol, selection method): a row per model/algorithm, a column per
  held-out domain and ``average``; a cell is the selected model's accuracy on the held-out domain,
  mean ± standard error over trials (ddof 1, :func:`.frame.stat`); ``average`` averages each
  trial's domains first (trials with every domain), then over trials, as DomainBed does;
* leaderboard: ``<dataset>-<protocol>.csv`` with :data:`HEADER`, one row per cell, compared by
  :func:`check_leave_one_out` (absolute tolerance in accuracy points).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .check import CheckResult
from .csvio import fmt_number, row_record
from .fixed_schema import column_tolerances, compare_rows, publish_pages, read_rows, split_kind
from .frame import MEASURED, as_text, records_to_frame, stat, variant_label
from .kinds import KindHooks, ResultKind
from .model_selection import METHODS, selected
from .site_model import Board, Cell, Grid, Row
from .tabledata import NoResultsError, TableData, fmt_stat

KIND = "leave-one-out"
AVERAGE = "average"
# How tables spell the built-in algorithms (others: their registered name).
ALGORITHM_TITLES = {"erm": "ERM", "mixstyle": "MixStyle"}
KEY = ("dataset", "protocol", "model", "model_kwargs", "algorithm", "selection", "test_domain")
HEADER = ["dataset", "protocol", "task", "model", "model_kwargs", "algorithm", "selection", "test_domain",
          "n_runs", "hparam_sets", "acc_pct", "acc_se_pct", "source", "note"]


def split(results: Any) -> tuple[Any, pd.DataFrame]:
    """``(the other records, the leave-one-out records as a records frame)``; a summary frame passes."""
    return split_kind(results, lambda f: f["kind"] == KIND if "kind" in f.columns else pd.Series(False, index=f.index))


def runs_of(frame: pd.DataFrame) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``{(dataset, protocol): runs}`` of a records frame, in :mod:`.model_selection`'s shape."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, r in frame.iterrows():
        run = r["dg_run"]
        if not isinstance(run, Mapping):
            continue
        out.setdefault((r["dataset"], r["protocol"]), []).append(
            {**run, "model": r["model"], "model_kwargs": as_text(r["model_kwargs"])})
    return out


def summary_rows(dataset: str, protocol: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, algorithm, method, test domain or average): mean, SE, n over trials."""
    rows = []
    hsets = len({r["hparams_seed"] for r in runs})
    for method in METHODS:
        picks = pd.DataFrame(selected(runs, method))
        if picks.empty:
            continue
        domains = sorted(set(picks["test_domain"]))
        for (model, kw, algo), g in picks.groupby(["model", "model_kwargs", "algorithm"], sort=True):
            base = dict(dataset=dataset, protocol=protocol, model=model, model_kwargs=kw, algorithm=algo,
                        selection=method, hparam_sets=hsets)
            for t, gt in g.groupby("test_domain"):
                mean, se, n = stat(gt["test_acc"])
                rows.append({**base, "test_domain": t, "acc": mean, "se": se, "n": n})
            full = g.groupby("trial").filter(lambda x: set(x["test_domain"]) == set(domains))
            if not full.empty:
                mean, se, n = stat(full.groupby("trial")["test_acc"].mean())
                rows.append({**base, "test_domain": AVERAGE, "acc": mean, "se": se, "n": n})
    return rows


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    if "acc" in frame.columns:  # already a summary (read from a leaderboard)
        return frame
    rows = [row for (d, p), runs in runs_of(frame).items() for row in summary_rows(d, p, runs)]
    return pd.DataFrame(rows, columns=[*KEY, "hparam_sets", "acc", "se", "n"])


def _columns(g: pd.DataFrame) -> list[str]:
    return sorted(set(g["test_domain"]) - {AVERAGE}) + [AVERAGE]


def _models(g: pd.DataFrame) -> list[tuple[str, str, str]]:
    return sorted(set(zip(g["model"], g["model_kwargs"], g["algorithm"])))


def tables(frame: pd.DataFrame) -> list[TableData]:
    """One DomainBed-shaped table per (dataset, protocol, selection method)."""
    s = _summary(frame)
    out = []
    order = {m: i for i, m in enumerate(METHODS)}  # DomainBed's order: training-domain validation first
    groups = sorted(s.groupby(["dataset", "protocol", "selection"]), key=lambda kv: (kv[0][:2], order[kv[0][2]]))
    for (dataset, protocol, method), g in groups:
        cols = _columns(g)
        rows = []
        for model, kw, algo in _models(g):
            mine = g[(g["model"] == model) & (g["model_kwargs"] == kw) & (g["algorithm"] == algo)]
            by = {r["test_domain"]: r for _, r in mine.iterrows()}
            rows.append([f"{variant_label(model, kw)} / {ALGORITHM_TITLES.get(algo, algo)}",
                         *(fmt_stat(by[c]["acc"], by[c]["se"]) if c in by else "–" for c in cols)])
        n = int(g["n"].max())
        out.append(TableData(
            title=f"{dataset} · {protocol}: held-out domain accuracy (%), model selection: {method}",
            columns=["model / algorithm", *cols], rows=rows, sources=[MEASURED] * len(rows),
            caption=f"columns: the held-out (test) domain, trained on the others; mean ± standard error over "
                    f"up to {n} trial(s), {int(g['hparam_sets'].max())} hyperparameter set(s) each; average: each "
                    "trial's mean over the domains, then over trials"))
    return out


def leaderboard_rows(frame: pd.DataFrame) -> dict[tuple[str, str], list[list[str]]]:
    s = _summary(frame)
    out: dict[tuple[str, str], list[list[str]]] = {}
    for (dataset, protocol), g in s.groupby(["dataset", "protocol"], sort=True):
        rows = [[dataset, protocol, "classification", r["model"], r["model_kwargs"], r["algorithm"], r["selection"],
                 r["test_domain"], str(int(r["n"])), str(int(r["hparam_sets"])), fmt_number(r["acc"]), fmt_number(r["se"]),
                 MEASURED, ""] for _, r in g.iterrows()]
        rows.sort(key=lambda row: (row[3], row[4], row[5], row[6], row[7] == AVERAGE, row[7]))
        out[(dataset, protocol)] = rows
    return out


def publish(frame: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<dataset>-<protocol>.csv`` and its ``.md`` page (a table per selection method)."""
    groups = {key: (HEADER, rows) for key, rows in leaderboard_rows(frame).items()}
    return publish_pages(groups, out_dir, "leave-one-domain-out", read_leaderboard,
                         lambda lb: tables(leaderboard_summary(lb)))


def read_leaderboard(p: Path, reader: Any = None) -> pd.DataFrame:
    """Read and validate a leave-one-out leaderboard (header :data:`HEADER`); errors name file and line."""
    return read_rows(p, reader, HEADER, "leave-one-out", _parse_row, KEY,
                     dict(kind=KIND, task="classification", metrics=("top1_acc",)))


def _parse_row(p: Path, line: int, row: list[str]) -> dict[str, Any]:
    rec, bad = row_record(p, line, HEADER, row, ("dataset", "protocol", "model", "algorithm", "selection",
                                                 "test_domain", "source"))
    if rec["selection"] not in METHODS:
        raise bad("selection", f"{rec['selection']!r} is not one of {', '.join(METHODS)}")
    for col in ("n_runs", "hparam_sets"):
        if not rec[col].isdigit() or int(rec[col]) < 1:
            raise bad(col, f"{rec[col]!r} is not a positive integer")
        rec[col] = int(rec[col])
    for col in ("acc_pct", "acc_se_pct"):
        try:
            rec[col] = float(rec[col]) if rec[col] else (math.nan if col == "acc_se_pct" else float("x"))
        except ValueError:
            raise bad(col, f"{rec[col]!r} is not a number") from None
        if not (math.isnan(rec[col]) or 0 <= rec[col] <= 100):
            raise bad(col, f"{rec[col]} is not a percentage in [0, 100]")
    return rec


def leaderboard_summary(lb: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{**{k: r[k] for k in KEY}, "hparam_sets": r["hparam_sets"], "acc": r["acc_pct"],
                          "se": r["acc_se_pct"], "n": r["n_runs"]} for _, r in lb.iterrows()],
                        columns=[*KEY, "hparam_sets", "acc", "se", "n"])


def check_leave_one_out(base: pd.DataFrame, measured: Any, tolerances: Mapping[str, float]) -> CheckResult:
    """Compare a leave-one-out leaderboard with measured records (absolute tolerance, accuracy points)."""
    tol = column_tolerances(tolerances, {"acc_pct": ("acc_pct", "top1_acc", "all")})
    frame = measured if isinstance(measured, pd.DataFrame) else records_to_frame(measured)
    mine = {(d, p) for d, p in zip(base["dataset"], base["protocol"])}
    got = {key: (HEADER, rows) for key, rows in leaderboard_rows(split(frame)[1]).items() if key in mine}
    return compare_rows(base, got, KEY, tol, lambda b: (
        f"{variant_label(b['model'], b['model_kwargs'])} / {b['algorithm']} · {b['selection']} · {b['test_domain']}"), 4)


def site_board(csv_path: Path, lb: pd.DataFrame) -> Board:
    """The site's page: one grid per selection method (models/algorithms x held-out domains)."""
    s = leaderboard_summary(lb)
    grids = []
    for method, g in sorted(s.groupby("selection"), key=lambda kv: list(METHODS).index(kv[0])):
        cols = _columns(g)
        rows = []
        for model, kw, algo in _models(g):
            by = {r["test_domain"]: r for _, r in g[(g["model"] == model) & (g["model_kwargs"] == kw)
                                                   & (g["algorithm"] == algo)].iterrows()}
            rows.append(Row(f"{variant_label(model, kw)} / {ALGORITHM_TITLES.get(algo, algo)}", MEASURED, "",
                            [Cell(fmt_number(by[c]["acc"]), "", fmt_number(by[c]["se"]), int(by[c]["n"])) if c in by else None
                             for c in cols], None))
        grids.append(Grid("top1_acc", KIND, cols, rows, heading=f"Held-out domain accuracy (%), selection: {method}",
                          caption="Trained on every domain but the column's; mean ± standard error over trials."))
    if not grids:
        raise NoResultsError(f"{csv_path}: no rows")
    first = lb.iloc[0]
    return Board(csv_path.stem, first["dataset"], first["protocol"], KIND, "classification", ("top1_acc",),
                 csv_path.name, grids, [], conditions=f"{len(_columns(s)) - 1} held-out domains")


def panels(frame: pd.DataFrame) -> list[Any]:
    """One drawing function ``f(ax)`` per (dataset, protocol, selection method): grouped bars of
    held-out accuracy per domain (and the average), a bar per model/algorithm, ± one SE."""
    s = _summary(frame)
    out = []
    for (dataset, protocol, method), g in sorted(s.groupby(["dataset", "protocol", "selection"]),
                                                 key=lambda kv: (kv[0][:2], list(METHODS).index(kv[0][2]))):
        out.append(lambda ax, g=g, t=f"{dataset} · {method}": _bars(ax, g, t))
    return out


def _bars(ax: Any, g: pd.DataFrame, title: str) -> None:
    cols, models = _columns(g), _models(g)
    width = 0.8 / max(1, len(models))
    for i, (model, kw, algo) in enumerate(models):
        by = {r["test_domain"]: r for _, r in g[(g["model"] == model) & (g["model_kwargs"] == kw)
                                               & (g["algorithm"] == algo)].iterrows()}
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(cols))]
        ax.bar(xs, [by[c]["acc"] if c in by else math.nan for c in cols], width, color=f"C{i % 10}",
               yerr=[0 if c not in by or pd.isna(by[c]["se"]) else by[c]["se"] for c in cols], capsize=2,
               label=f"{variant_label(model, kw)} / {ALGORITHM_TITLES.get(algo, algo)}")
    ax.set_xticks(range(len(cols)), cols, fontsize=7)
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=6)


# Registered by results.kinds on first use (BUILTIN_ELSEWHERE).
RESULT_KIND = ResultKind(
    KIND, ("test_domain",), "test_domain", published={"classification": ("top1_acc",)}, shown={"classification": ("top1_acc",)},
    aliases={"top1": "top1_acc", "acc": "top1_acc"}, describe="rows: model / algorithm; columns: held-out domain",
    hooks=KindHooks(tables=tables, publish=publish, read=read_leaderboard, check=check_leave_one_out,
                    panels=panels, board=site_board, header=HEADER, split=split))

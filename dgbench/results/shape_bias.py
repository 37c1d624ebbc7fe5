"""Shape-bias results (Geirhos et al. 2019): their summary, table, figure, leaderboard and check.

A shape-bias record is one (model, cue-conflict dataset) with the integer decision counts
(``decisions``: shape, texture, other, excluded) and, in percent, ``metrics.shape_bias`` (shape /
(shape + texture)), ``cue_acc`` ((shape + texture) / conflict images), ``shape_match`` and
``texture_match``. Its summary has one row per (dataset, protocol, model, variant kwargs):
repeats (seeds) give the metrics' mean and standard error, and the counts summed.

* table: one per (dataset, protocol): a row per model; shape bias, cue accuracy, the shape and
  texture match rates and the counts;
* figure: a panel per (dataset, protocol): each model's shape bias as a bar, 50 % marked;
* leaderboard: ``<dataset>-<protocol>.csv`` with the schema :data:`HEADER`, validated by
  :func:`read_leaderboard` and compared by :func:`check_shape_bias` (tolerances in points).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .catalogue import Metric
from .conditions import natural
from .csvio import fmt_number, row_record
from .fixed_schema import column_tolerances, compare_rows, publish_pages, read_rows, split_kind
from .frame import MEASURED, as_text, latest_config, records_to_frame, stat, variant_label
from .kinds import KindHooks, ResultKind
from .site_model import Board, Cell, Grid, Row
from .tabledata import NoResultsError, TableData, fmt_stat

KIND = "shape-bias"
METRICS = ("shape_bias", "cue_acc", "shape_match", "texture_match")
COUNTS = ("shape", "texture", "other", "excluded")
KEY = ("dataset", "protocol", "model", "model_kwargs")
HEADER = ["dataset", "protocol", "task", "model", "model_kwargs", "n_runs", "shape_decisions", "texture_decisions",
          "other_decisions", "excluded_images", *(f"{m}_pct" for m in METRICS), *(f"{m}_se_pct" for m in METRICS),
          "source", "note"]
TITLES = {"shape_bias": "shape bias", "cue_acc": "shape or texture", "shape_match": "shape", "texture_match": "texture"}


# ----------------------------------------------------------------------------- summary
def is_shape_bias(frame: pd.DataFrame) -> pd.Series:
    return frame["kind"] == KIND if "kind" in frame.columns else pd.Series(False, index=frame.index)


def split(results: pd.DataFrame | Iterable[Mapping[str, Any]]) -> tuple[Any, pd.DataFrame]:
    """``(the other records, the shape-bias records as a records frame)``; a summary frame passes."""
    return split_kind(results, is_shape_bias)


def _counts(value: Any) -> dict[str, int]:
    return {c: int(value.get(c, 0)) for c in COUNTS} if isinstance(value, Mapping) else dict.fromkeys(COUNTS, 0)


def summarize_shape_bias(frame: pd.DataFrame) -> pd.DataFrame:
    """Shape-bias records (a records frame) -> one row per :data:`KEY`, repeats aggregated."""
    cols = [*KEY, "n", "order", *COUNTS, *METRICS, *(f"{m}_se" for m in METRICS)]
    f = frame[frame["kind"] == KIND] if not frame.empty else frame
    if f.empty:
        return pd.DataFrame(columns=cols)
    f = f.copy()
    for c in ("dataset", "protocol", "model", "model_kwargs"):
        f[c] = [as_text(v) for v in f[c]]
    f["counts"] = [_counts(v) for v in (f["decisions"] if "decisions" in f.columns else [None] * len(f))]
    rows = []
    for key, g in f.groupby(list(KEY), sort=False):
        g = latest_config(key, g)
        row = {**dict(zip(KEY, key)), "n": len(g), "order": int(g["order"].min())}
        row.update({c: sum(cnt[c] for cnt in g["counts"]) for c in COUNTS})
        for m in METRICS:
            col = f"metrics.{m}"
            row[m], row[f"{m}_se"], _ = stat(g[col]) if col in g.columns else (math.nan, math.nan, 0)
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if "n" in frame.columns and "shape_bias" in frame.columns else summarize_shape_bias(frame)


def _groups(s: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(dataset, protocol, its rows in natural model order)."""
    out = []
    for (dataset, protocol), g in s.groupby(["dataset", "protocol"], sort=True):
        order = sorted(range(len(g)), key=lambda i: (natural(g["model"].iloc[i]), g["model_kwargs"].iloc[i]))
        out.append((dataset, protocol, g.iloc[order]))
    return out


# ----------------------------------------------------------------------------- table
def shape_bias_tables(frame: pd.DataFrame) -> list[TableData]:
    """One table per (dataset, protocol): a row per model."""
    tables = []
    for dataset, protocol, g in _groups(_summary(frame)):
        rows = []
        for _, r in g.iterrows():
            runs = f" n={int(r['n'])}" if r["n"] > 1 else ""
            rows.append([variant_label(r["model"], r["model_kwargs"]) + runs,
                         *(fmt_stat(r[m], r[f"{m}_se"]) for m in METRICS),
                         f"{int(r['shape'])}/{int(r['texture'])}/{int(r['other'])}", str(int(r["excluded"]))])
        tables.append(TableData(
            title=f"{dataset} · {protocol}: shape bias and cue decisions, %",
            columns=["model", *(f"{TITLES[m]} %" for m in METRICS), "shape/texture/other", "excluded"],
            rows=rows, sources=[MEASURED] * len(rows),
            caption="shape bias = shape / (shape + texture) decisions; shape or texture = decisions that are "
                    "either cue, of the images whose shape and texture classes differ (excluded: the same "
                    "class); shape, texture: each cue's share of those images; mean ± standard error over n "
                    "runs where n > 1 (counts summed)"))
    return tables


# ----------------------------------------------------------------------------- figure
def shape_bias_panels(frame: pd.DataFrame) -> list[Any]:
    """One drawing function ``f(ax)`` per (dataset, protocol): shape bias per model."""
    return [lambda ax, g=g, t=f"{d} · {p}": _panel(ax, g, t) for d, p, g in _groups(_summary(frame))]


def _panel(ax: Any, g: pd.DataFrame, title: str) -> None:
    labels = [variant_label(m, k) for m, k in zip(g["model"], g["model_kwargs"])]
    y = list(range(len(labels)))[::-1]  # the table's order, top to bottom
    se = [0.0 if math.isnan(v) else v for v in g["shape_bias_se"]]
    ax.barh(y, g["shape_bias"], xerr=se if any(se) else None, color="C0", capsize=2)
    for yi, v, r in zip(y, g["shape_bias"], g.itertuples()):
        ax.text(min(v, 100) + 1, yi, f"{v:.1f} ({r.shape}/{r.shape + r.texture})", va="center", fontsize=7)
    ax.axvline(50, color="black", linewidth=0.6, linestyle="--")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 115)
    ax.set_xlabel("shape bias (%): shape / (shape + texture) decisions")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def shape_bias_figure(frame: pd.DataFrame) -> Any:
    from .plot import panel_figure

    panels = shape_bias_panels(frame)
    if not panels:
        raise NoResultsError("nothing to plot: no shape-bias results (run `dgbench run --protocol shape-bias`)")
    return panel_figure(panels, columns=2)


# ----------------------------------------------------------------------------- leaderboard
def leaderboard_rows(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[list[str], list[list[str]]]]:
    """Shape-bias records (or their summary) -> {(dataset, protocol): (HEADER, sorted rows)}."""
    out: dict[tuple[str, str], tuple[list[str], list[list[str]]]] = {}
    for dataset, protocol, g in _groups(_summary(frame)):
        rows = [[dataset, protocol, "classification", r["model"], r["model_kwargs"], str(int(r["n"])),
                 *(str(int(r[c])) for c in COUNTS), *(fmt_number(r[m]) for m in METRICS),
                 *(fmt_number(r[f"{m}_se"]) for m in METRICS), MEASURED, ""] for _, r in g.iterrows()]
        rows.sort(key=lambda row: (row[3], row[4]))
        out[(dataset, protocol)] = (HEADER, rows)
    return out


def publish_shape_bias(frame: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<dataset>-<protocol>.csv`` and its ``.md`` page per shape-bias protocol run."""
    return publish_pages(leaderboard_rows(frame), out_dir, "shape bias", read_leaderboard,
                         lambda lb: shape_bias_tables(leaderboard_summary(lb)))


def read_leaderboard(p: Path, reader: Any = None) -> pd.DataFrame:
    """Read and validate a shape-bias leaderboard (header :data:`HEADER`); errors name file and line."""
    return read_rows(p, reader, HEADER, "shape-bias", _parse_row, KEY,
                     dict(kind=KIND, task="classification", metrics=METRICS))


def _parse_row(p: Path, line: int, row: list[str]) -> dict[str, Any]:
    rec, bad = row_record(p, line, HEADER, row, ("dataset", "protocol", "model", "source"))
    if rec["task"] != "classification":
        raise bad("task", f"{rec['task']!r}; shape-bias leaderboards are classification")
    for col in ("n_runs", *(f"{c}_decisions" for c in COUNTS[:3]), "excluded_images"):
        if not rec[col].isdigit() or (col == "n_runs" and int(rec[col]) < 1):
            raise bad(col, f"{rec[col]!r} is not a {'positive' if col == 'n_runs' else 'non-negative'} integer")
        rec[col] = int(rec[col])
    for m in METRICS:
        for col in (f"{m}_pct", f"{m}_se_pct"):
            text = rec[col]
            if not text:
                rec[col] = None
                continue
            try:
                x = float(text)
            except ValueError:
                raise bad(col, f"{text!r} is not a number") from None
            if not (math.isfinite(x) and 0 <= x <= 100):
                raise bad(col, f"{text} is not a percentage in [0, 100]")
            rec[col] = x
    return rec


def leaderboard_summary(lb: pd.DataFrame) -> pd.DataFrame:
    """A validated shape-bias leaderboard -> summary rows (as :func:`summarize_shape_bias`)."""
    def num(x: Any) -> float:
        return math.nan if x is None else float(x)

    rows = [{**{k: r[k] for k in KEY}, "n": r["n_runs"], "order": i,
             "shape": r["shape_decisions"], "texture": r["texture_decisions"], "other": r["other_decisions"],
             "excluded": r["excluded_images"], **{m: num(r[f"{m}_pct"]) for m in METRICS},
             **{f"{m}_se": num(r[f"{m}_se_pct"]) for m in METRICS}} for i, (_, r) in enumerate(lb.iterrows())]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- check
def check_shape_bias(base: pd.DataFrame, measured: Any, tolerances: Mapping[str, float]) -> Any:
    """Compare a shape-bias leaderboard with measured records (absolute tolerances, points)."""
    tol = column_tolerances(tolerances, {f"{m}_pct": (f"{m}_pct", m, "all") for m in METRICS})
    frame = measured if isinstance(measured, pd.DataFrame) else records_to_frame(measured)
    mine = set(zip(base["dataset"], base["protocol"]))
    s = summarize_shape_bias(frame)
    s = s[[(d, p) in mine for d, p in zip(s["dataset"], s["protocol"])]] if not s.empty else s
    return compare_rows(base, leaderboard_rows(s) if not s.empty else {}, KEY, tol,
                        lambda b: variant_label(b["model"], b["model_kwargs"]), 4)


# ----------------------------------------------------------------------------- site
def site_board(csv_path: Path, lb: pd.DataFrame) -> Board:
    """The site's page of a shape-bias leaderboard: models x (the four rates), and the figure."""
    import io

    s = leaderboard_summary(lb)
    rows = []
    for _, r in s.iterrows():
        cells = [Cell(fmt_number(r[m]), "", fmt_number(r[f"{m}_se"]), int(r["n"])) for m in METRICS]
        rows.append(Row(variant_label(r["model"], r["model_kwargs"]), MEASURED, "", cells, None))
    grid = Grid("shape_bias", KIND, list(METRICS), rows, columns=[f"{TITLES[m]} (%)" for m in METRICS],
                heading="shape bias and cue decisions (%)",
                caption="Shape bias = shape / (shape + texture) decisions on cue-conflict images whose shape and "
                        "texture classes differ; shape or texture: decisions that are either cue; shape, texture: "
                        "each cue's share. The decision counts are in the CSV.")
    buf = io.BytesIO()
    shape_bias_figure(s).savefig(buf, format="png", dpi=110, metadata={"Software": None})
    first = lb.iloc[0]
    return Board(csv_path.stem, first["dataset"], first["protocol"], KIND, "classification", METRICS,
                 csv_path.name, [grid], [("shape_bias", buf.getvalue())], conditions="cue-conflict decisions",
                 plot_note="shape bias per model (%)")


# Registered by results.kinds on first use (BUILTIN_ELSEWHERE), so kinds imports nothing of this module.
RESULT_KIND = ResultKind(
    KIND, (), "", published={"classification": METRICS}, shown={"classification": METRICS},
    aliases={"shape": "shape_bias", "bias": "shape_bias"}, describe="rows: models; columns: shape bias and cue rates",
    metrics=(Metric("shape_bias", "shape bias", "%", True), Metric("cue_acc", "shape or texture decisions", "%", True),
             Metric("shape_match", "shape decisions", "%", True), Metric("texture_match", "texture decisions", "%", False)),
    hooks=KindHooks(tables=shape_bias_tables, publish=publish_shape_bias, read=read_leaderboard,
                    check=check_shape_bias, panels=shape_bias_panels, board=site_board, header=HEADER,
                    split=split))

"""Divergence results (Section 4.3 / Fig. 5): their summary, table, figure, leaderboard and check.

A divergence record is one (model, domain pair, probed layer) with ``metrics.divergence`` in nats
(see :mod:`dgbench.metrics.divergence`). Its summary has one row per (dataset, protocol, model,
variant kwargs, pair, layer), repeats (seeds) aggregated into mean, standard error and count.

* table: one per (dataset, protocol, pair): a row per layer (in forward order), a column per
  model; a cell marked ``IN`` where the model instance-normalizes inside that layer;
* figure (Fig. 5's shape): a panel per pair, divergence against layer, a line per model, hollow
  squares on the layers where the model has IN;
* leaderboard: ``<dataset>-<protocol>.csv`` with the schema :data:`HEADER` (values in nats,
  :data:`DECIMALS` decimals), validated by :func:`read_leaderboard` and compared by
  :func:`check_divergence` (absolute tolerances in nats).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .conditions import natural
from .csvio import row_record
from .fixed_schema import column_tolerances, compare_rows, publish_pages, read_rows, split_kind
from .frame import MEASURED, as_text, latest_config, records_to_frame, stat, variant_label
from .kinds import KindHooks, ResultKind
from .site_model import Board, Cell, Grid, Row
from .tabledata import NoResultsError, TableData, fmt_stat

KIND = "divergence"
METRIC = "divergence"
DECIMALS = 3  # small nets' content divergences are ~0.03 nats: two decimals would hide them
KEY = ("dataset", "protocol", "model", "model_kwargs", "pair", "layer")
HEADER = ["dataset", "protocol", "task", "model", "model_kwargs", "pair", "pair_type", "layer_index", "layer",
          "has_in", "n_runs", "divergence_nats", "divergence_se_nats", "source", "note"]


# ----------------------------------------------------------------------------- summary
def is_divergence(frame: pd.DataFrame) -> pd.Series:
    return frame["kind"] == KIND if "kind" in frame.columns else pd.Series(False, index=frame.index)


def split(results: pd.DataFrame | Iterable[Mapping[str, Any]]) -> tuple[Any, pd.DataFrame]:
    """``(the other records, the divergence records as a records frame)``; a summary frame passes."""
    return split_kind(results, is_divergence)


def summarize_divergence(frame: pd.DataFrame) -> pd.DataFrame:
    """Divergence records (a records frame) -> one row per (KEY), seeds aggregated."""
    cols = [*KEY, "pair_type", "layer_index", "has_in", "n", "order", METRIC, f"{METRIC}_se"]
    f = frame[is_divergence(frame)] if not frame.empty else frame
    if f.empty or f"metrics.{METRIC}" not in f.columns:
        return pd.DataFrame(columns=cols)
    f = f.copy()
    for c in ("dataset", "protocol", "model", "model_kwargs", "pair", "layer"):
        f[c] = [as_text(v) for v in f[c]]
    rows = []
    for key, g in f.groupby(list(KEY), sort=False):
        g = latest_config(key, g)
        first = g.iloc[0]
        mean, se, n = stat(g[f"metrics.{METRIC}"])
        spec = first["pair_spec"] if isinstance(first["pair_spec"], Mapping) else {}
        rows.append({**dict(zip(KEY, key)), "pair_type": spec.get("type", ""),
                     "layer_index": int(first["layer_index"]), "has_in": bool(first["has_in"]),
                     "n": n, "order": int(g["order"].min()), METRIC: mean, f"{METRIC}_se": se})
    return pd.DataFrame(rows, columns=cols)


def _models(s: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(s["model"], s["model_kwargs"])), key=lambda k: (natural(k[0]), k[1]))


def _pairs(s: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(dataset, protocol, pair) in the order the protocol ran them."""
    first = s.sort_values("order").drop_duplicates(["dataset", "protocol", "pair"])
    return list(zip(first["dataset"], first["protocol"], first["pair"]))


# ----------------------------------------------------------------------------- table
def divergence_tables(frame: pd.DataFrame) -> list[Any]:
    """One :class:`~.tables.TableData` per (dataset, protocol, pair): layers x models."""
    s = frame if "n" in frame.columns and METRIC in frame.columns else summarize_divergence(frame)
    tables = []
    for dataset, protocol, pair in _pairs(s):
        g = s[(s["dataset"] == dataset) & (s["protocol"] == protocol) & (s["pair"] == pair)]
        models = _models(g)
        layers = g.sort_values("layer_index").drop_duplicates("layer")[["layer_index", "layer"]]
        rows = []
        for idx, layer in zip(layers["layer_index"], layers["layer"]):
            cells = []
            for model, kw in models:
                r = g[(g["model"] == model) & (g["model_kwargs"] == kw) & (g["layer"] == layer)]
                if r.empty:
                    cells.append("–")
                    continue
                r0 = r.iloc[0]
                text = fmt_stat(r0[METRIC], r0.get(f"{METRIC}_se", math.nan), DECIMALS) + (" IN" if r0["has_in"] else "")
                n = r0.get("n", math.nan)
                cells.append(text + (f" n={int(n)}" if pd.notna(n) and n > 1 else ""))
            rows.append([str(int(idx)), layer, *cells])
        ptype = next((t for t in g["pair_type"] if t), "")
        tables.append(TableData(
            title=f"{dataset} · {protocol} · {pair}{f' ({ptype})' if ptype else ''}: feature divergence, nats",
            columns=["#", "layer", *(variant_label(m, k) for m, k in models)], rows=rows,
            sources=[MEASURED] * len(rows),
            caption="symmetric KL of the per-channel spatial means' Gaussians, averaged over channels "
                    "(Eq. 1-3 of the paper); IN = the model instance-normalizes in that layer; "
                    "mean ± standard error over n runs where n > 1",
        ))
    return tables


# ----------------------------------------------------------------------------- figure
def divergence_panels(frame: pd.DataFrame) -> list[Any]:
    """One drawing function ``f(ax)`` per (dataset, protocol, pair), in Fig. 5's shape."""
    s = frame if "n" in frame.columns and METRIC in frame.columns else summarize_divergence(frame)
    panels = []
    models = _models(s)
    for dataset, protocol, pair in _pairs(s):
        g = s[(s["dataset"] == dataset) & (s["protocol"] == protocol) & (s["pair"] == pair)]
        ptype = next((t for t in g["pair_type"] if t), "")
        title = f"{pair}{f' ({ptype})' if ptype else ''} · {dataset}"
        panels.append(lambda ax, g=g, t=title: _panel(ax, g, t, [m for m in models if m in set(_models(g))]))
    return panels


def _panel(ax: Any, g: pd.DataFrame, title: str, models: list[tuple[str, str]]) -> None:
    layers = g.sort_values("layer_index").drop_duplicates("layer")
    for i, (model, kw) in enumerate(models):
        color = f"C{i % 10}"  # fixed per model: the same colour in every panel
        sel = g[(g["model"] == model) & (g["model_kwargs"] == kw)].sort_values("layer_index")
        se = sel[f"{METRIC}_se"].fillna(0.0)
        ax.errorbar(sel["layer_index"], sel[METRIC], yerr=se if (se > 0).any() else None, marker="o", color=color,
                    markersize=3, capsize=2, linewidth=1.2, label=variant_label(model, kw))
        ins = sel[sel["has_in"].astype(bool)]
        if not ins.empty:
            ax.plot(ins["layer_index"], ins[METRIC], linestyle="none", marker="s", markersize=9,
                    markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.2)
    ax.set_xticks(layers["layer_index"], layers["layer"], rotation=45 if len(layers) > 6 else 0,
                  ha="right" if len(layers) > 6 else "center", fontsize=7)
    ax.set_xlabel("layer (□: the model has IN there)")
    ax.set_ylabel("feature divergence (nats)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def divergence_figure(frame: pd.DataFrame) -> Any:
    """Fig. 5 of the paper from divergence records (or a summary): a panel per pair, side by side."""
    from .plot import panel_figure

    panels = divergence_panels(frame)
    if not panels:
        raise NoResultsError("nothing to plot: no divergence results (run `dgbench run --protocol divergence`)")
    return panel_figure(panels, columns=4)


def plot_divergence(frame: pd.DataFrame, out: str | os.PathLike) -> Path:
    """:func:`divergence_figure` as a PNG."""
    fig = divergence_figure(frame)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out


# ----------------------------------------------------------------------------- leaderboard
def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    s = f"{float(x):.{DECIMALS}f}"
    return s.lstrip("-") if float(s) == 0 else s  # no "-0.000"


def leaderboard_rows(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[list[str], list[list[str]]]]:
    """Divergence records (or their summary) -> {(dataset, protocol): (HEADER, sorted rows)}."""
    s = frame if "n" in frame.columns and METRIC in frame.columns else summarize_divergence(frame)
    out: dict[tuple[str, str], tuple[list[str], list[list[str]]]] = {}
    for (dataset, protocol), g in s.groupby(["dataset", "protocol"], sort=True):
        rows = [[dataset, protocol, "classification", r["model"], r["model_kwargs"], r["pair"], r["pair_type"],
                 str(int(r["layer_index"])), r["layer"], "true" if r["has_in"] else "false", str(int(r["n"])),
                 _num(r[METRIC]), _num(r[f"{METRIC}_se"]), MEASURED, ""] for _, r in g.iterrows()]
        idx = [HEADER.index(c) for c in ("model", "model_kwargs", "pair", "layer_index")]
        rows.sort(key=lambda row: [int(row[i]) if HEADER[i] == "layer_index" else row[i] for i in idx])
        out[(dataset, protocol)] = (HEADER, rows)
    return out


def publish_divergence(frame: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<dataset>-<protocol>.csv`` and its ``.md`` page per divergence protocol run."""
    return publish_pages(leaderboard_rows(frame), out_dir, "feature divergence", read_leaderboard,
                         lambda lb: divergence_tables(leaderboard_summary(lb)))


def read_leaderboard(p: Path, reader: Any = None) -> pd.DataFrame:
    """Read and validate a divergence leaderboard (header :data:`HEADER`); errors name file and line."""
    return read_rows(p, reader, HEADER, "divergence", _parse_row, KEY,
                     dict(kind=KIND, task="classification", metrics=(METRIC,)))


def _parse_row(p: Path, line: int, row: list[str]) -> dict[str, Any]:
    rec, bad = row_record(p, line, HEADER, row, ("dataset", "protocol", "model", "pair", "layer", "source"))
    if rec["task"] != "classification":
        raise bad("task", f"{rec['task']!r}; divergence leaderboards are classification")
    if not rec["layer_index"].isdigit() or int(rec["layer_index"]) < 1:
        raise bad("layer_index", f"{rec['layer_index']!r} is not a positive integer")
    rec["layer_index"] = int(rec["layer_index"])
    if rec["has_in"] not in ("true", "false"):
        raise bad("has_in", f"{rec['has_in']!r} is not true or false")
    rec["has_in"] = rec["has_in"] == "true"
    if not rec["n_runs"].isdigit() or int(rec["n_runs"]) < 1:
        raise bad("n_runs", f"{rec['n_runs']!r} is not a positive integer")
    rec["n_runs"] = int(rec["n_runs"])
    for col in ("divergence_nats", "divergence_se_nats"):
        text = rec[col]
        if not text:
            if col == "divergence_nats":
                raise bad(col, "empty; every row has a divergence")
            rec[col] = None
            continue
        try:
            x = float(text)
        except ValueError:
            raise bad(col, f"{text!r} is not a number") from None
        if not (math.isfinite(x) and x >= 0):
            raise bad(col, f"{text} is not a finite number of nats >= 0 (a divergence is never negative)")
        rec[col] = x
    return rec


def leaderboard_summary(lb: pd.DataFrame) -> pd.DataFrame:
    """A validated divergence leaderboard -> summary rows (as :func:`summarize_divergence`)."""
    rows = [{"dataset": r["dataset"], "protocol": r["protocol"], "model": r["model"], "model_kwargs": r["model_kwargs"],
             "pair": r["pair"], "layer": r["layer"], "pair_type": r["pair_type"], "layer_index": r["layer_index"],
             "has_in": r["has_in"], "n": r["n_runs"], "order": i, METRIC: r["divergence_nats"],
             f"{METRIC}_se": math.nan if r["divergence_se_nats"] is None else r["divergence_se_nats"]}
            for i, (_, r) in enumerate(lb.iterrows())]
    return pd.DataFrame(rows)  # pairs in the CSV's order (sorted by name; the run's order is not kept)


# ----------------------------------------------------------------------------- check
def check_divergence(base: pd.DataFrame, measured: Any, tolerances: Mapping[str, float]) -> Any:
    """Compare a divergence leaderboard with measured records (absolute tolerances, nats)."""
    tol = column_tolerances(tolerances, {"divergence_nats": ("divergence_nats", METRIC, "all")})
    frame = measured if isinstance(measured, pd.DataFrame) else records_to_frame(measured)
    mine = {(d, p) for d, p in zip(base["dataset"], base["protocol"])}
    s = summarize_divergence(frame)
    s = s[[(d, p) in mine for d, p in zip(s["dataset"], s["protocol"])]] if not s.empty else s
    return compare_rows(base, leaderboard_rows(s) if not s.empty else {}, KEY, tol,
                        lambda b: f"{variant_label(b['model'], b['model_kwargs'])} · {b['pair']} · {b['layer']}",
                        DECIMALS + 2)


# ----------------------------------------------------------------------------- site
def site_board(csv_path: Path, lb: pd.DataFrame) -> Board:
    """The site's page of a divergence leaderboard: a table per pair (models x layers, ``IN``
    where the model instance-normalizes) and Fig. 5's panels."""
    import io

    s = leaderboard_summary(lb)
    grids = []
    for dataset, protocol, pair in _pairs(s):
        g = s[(s["dataset"] == dataset) & (s["protocol"] == protocol) & (s["pair"] == pair)]
        layers = list(g.sort_values("layer_index").drop_duplicates("layer")["layer"])
        rows = []
        for model, kw in _models(g):
            by = {r["layer"]: r for _, r in g[(g["model"] == model) & (g["model_kwargs"] == kw)].iterrows()}
            cells = [Cell(_num(by[x][METRIC]), "", _num(by[x][f"{METRIC}_se"]), int(by[x]["n"]),
                          mark="IN" if by[x]["has_in"] else "") if x in by else None for x in layers]
            rows.append(Row(variant_label(model, kw), MEASURED, "", cells, None))
        ptype = next((t for t in g["pair_type"] if t), "")
        grids.append(Grid(METRIC, KIND, layers, rows, heading=f"{pair}{f' ({ptype})' if ptype else ''}: "
                          "feature divergence (nats)", unit="nats", caption=(
                              "Feature divergence in nats per probed layer (lower: the layer is more invariant to "
                              "the pair's difference); IN: the model instance-normalizes in that layer; mean ± "
                              "standard error and n where several runs were averaged.")))
    buf = io.BytesIO()
    divergence_figure(s).savefig(buf, format="png", dpi=110, metadata={"Software": None})
    first = lb.iloc[0]
    return Board(csv_path.stem, first["dataset"], first["protocol"], KIND, "classification", (METRIC,),
                 csv_path.name, grids, [(METRIC, buf.getvalue())],
                 conditions=f"{len(set(s['layer']))} layers x {len(grids)} pairs",
                 plot_note="{title} per layer and model (nats; □: the model has IN there)")


# Registered by results.kinds on first use (BUILTIN_ELSEWHERE), so kinds imports nothing of this module.
RESULT_KIND = ResultKind(
    KIND, ("pair", "layer"), "layer", published={"classification": (METRIC,)}, shown={"classification": (METRIC,)},
    aliases={"kl": METRIC, "div": METRIC}, describe="rows: layers; columns: models",
    hooks=KindHooks(tables=divergence_tables, publish=publish_divergence, read=read_leaderboard,
                    check=check_divergence, panels=divergence_panels, board=site_board, header=HEADER,
                    split=split))

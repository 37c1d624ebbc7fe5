"""Result tables in the paper's shapes, rendered for the terminal, CSV, Markdown or LaTeX.

* appearance (Table 1): one row per model, one column per shift; a cell is the error of the
  chosen metric and, in brackets, its drop from the reference column (``origin``);
* cross-domain (Table 6): one row per model and training domain, one column per test domain; a
  cell is the task's metrics joined by ``/`` (mIoU/pixel accuracy, or top-1 accuracy) and, in
  brackets, the drop from the in-domain cell of the row.

A drop is a degradation in points: error up, or accuracy/mIoU down, reads positive (as the
paper's Table 1 prints it). Where a cell aggregates several runs of one configuration (seeds) it
shows mean ± standard error and the count, as DomainBed's tables do: ``25.54 ± 0.12 (3.00 ±
0.05) n=3``, or with two metrics ``25.54/8.03 ± 0.12/0.04 (3.00/1.71 ± 0.05/0.02) n=3``. With the paper's numbers joined, their rows are marked ``paper`` in a source column.

:func:`render_table` is the one entry point other commands need (``dgbench run`` prints its own
records with it).
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pandas as pd
from rich import get_console
from rich.console import Group, RenderableType
from rich.table import Table

from ..errors import DgbenchError, UnknownNameError
from . import catalogue
from .conditions import natural
from .tabledata import NoResultsError, TableData, fmt_stat
from .frame import MEASURED, as_text, records_to_frame, row_label, summarize
from .kinds import all_kinds, fraction_title, get_kind, kind_names, resolve, resolve_metric, shown_metrics

FORMATS = ("rich", "csv", "markdown", "latex")
_BRACKETS = re.compile(r"\[(-?[\d.]+), (-?[\d.]+)\]")  # a 95 % interval in a cell (see _interval)
_TEXT_COLUMNS = ("source", "train \\ test")  # left-aligned; numbers are right-aligned
PAPER = "paper"

METRIC_TITLES = {name: m.title for name, m in catalogue.METRICS.items()}  # read by the renderers


# ---------------------------------------------------------------- building


def _joined(row: Mapping[str, Any], cols: list[str]) -> str:
    """``24.30/7.10`` or, with standard errors, ``24.30/7.10 ± 0.06/0.01`` (the paper's slashes)."""
    means = "/".join(fmt_stat(row.get(c, math.nan)) for c in cols)
    ses = [row.get(f"{c}_se", math.nan) for c in cols]
    if all(se is None or math.isnan(se) for se in ses):
        return means
    return means + " ± " + "/".join(fmt_stat(se) for se in ses)


def _interval(row: Mapping[str, Any], metrics: list[str], part: str = "") -> str:
    """`` [lo, hi]`` where the row has a 95 % interval (results.intervals; one metric per cell)."""
    if len(metrics) != 1:
        return ""
    lo, hi = (row.get(f"{metrics[0]}{part}_{end}", math.nan) for end in ("lo", "hi"))
    return "" if lo is None or math.isnan(lo) or math.isnan(hi) else f" [{lo:.1f}, {hi:.1f}]"


def _has_intervals(frame: pd.DataFrame) -> bool:
    """Intervals or --vs marks: shown one metric per cell, so such a table is split per metric."""
    return any((c.endswith("_lo") or c.endswith("_vs_p")) and frame[c].notna().any() for c in frame.columns)


def _vs_mark(row: Mapping[str, Any], metrics: list[str]) -> str:
    """``*`` where the row's error differs significantly from the --vs model's (results.versus)."""
    if len(metrics) != 1:
        return ""
    from .versus import ALPHA, MARK

    p = row.get(f"{metrics[0]}_vs_p", math.nan)
    return MARK if p is not None and not math.isnan(p) and p < ALPHA else ""


def _cell(row: Mapping[str, Any], metrics: Iterable[str], with_drop: bool) -> str:
    metrics = list(metrics)
    text = _joined(row, metrics) + _vs_mark(row, metrics) + _interval(row, metrics)
    if with_drop:
        drops = [f"{m}_drop" for m in metrics]
        if any(not math.isnan(row.get(d, math.nan)) for d in drops):
            text += f" ({_joined(row, drops)}{_interval(row, metrics, '_drop')})"
    n = row.get("n", math.nan)
    if isinstance(n, (int, float)) and not math.isnan(n) and n > 1:
        text += f" n={int(n)}"
    return text


def resolve_metrics(metric: str | None, kind: str, available: Iterable[str]) -> list[str]:
    """The record metrics a table of ``kind`` shows for the user's ``--metric`` (see the catalogue)."""
    if metric is None:
        return shown_metrics(kind, available)
    return [resolve_metric(metric, kind, available)]


def _canonical(name: str) -> str:
    """The registry's canonical name (``resnext101_32x4d_ibn_a`` -> ``resnext101_ibn_a``), or the
    name itself when the registry does not know it (a plugin's model, a refused name)."""
    from ..models.registry import resolve_name

    try:
        return resolve_name(name)
    except UnknownNameError:
        return name


def _paper_matches(paper: pd.DataFrame, kind: str, dataset: str, protocol: str,
                   models: Iterable[str] = ()) -> pd.DataFrame:
    """Paper rows for a measured table: same kind, and dataset/protocol equal or a refinement of
    the paper's (``imagenet-val`` matches ``imagenet``, ``appearance-lite`` matches ``appearance``).

    The paper's clean-error tables (2, 4, 5: protocol ``classification``, shift ``origin``) join
    an appearance table's reference column, for (model, kwargs) the matching protocol's rows do
    not already give. Models join by canonical registry name (paper rows take the measured
    spelling), so an alias on either side still joins; only ``models`` (measured names) are kept.
    """
    if paper is None or paper.empty:
        return pd.DataFrame()

    def refines(measured: str, reported: str) -> bool:
        return measured == reported or measured.startswith(reported + "-")

    same = [k == kind and refines(dataset, d) and refines(protocol, p)
            for k, d, p in zip(paper["kind"], paper["dataset"], paper["protocol"])]
    shifts = get_kind(kind).column == "shift"  # the clean-error tables join a shift table's reference column
    clean = [shifts and k == kind and refines(dataset, d) and p == "classification" and sh == "origin"
             for k, d, p, sh in zip(paper["kind"], paper["dataset"], paper["protocol"], paper["shift"])]
    spelled = {_canonical(m): m for m in models}
    out = paper[same].copy()
    out["model"] = [spelled.get(_canonical(m), m) for m in out["model"]]
    extra = paper[clean].copy()
    extra["model"] = [spelled.get(_canonical(m), m) for m in extra["model"]]
    have = set(zip(out["model"], out["model_kwargs"], out["shift"]))
    extra = extra[[k not in have for k in zip(extra["model"], extra["model_kwargs"], extra["shift"])]]
    out = pd.concat([out, extra], ignore_index=True) if not extra.empty else out
    return out[out["model"].isin(set(spelled.values()))]


def build_tables(summary: pd.DataFrame, *, kind: str | None = None, metric: str | None = None,
                 paper: pd.DataFrame | None = None, width: int | None = None) -> list[TableData]:
    """One table per (dataset, protocol) of a summary frame; paper rows joined when given.

    Paper rows join the models measured; with no measured rows at all, the paper's own tables
    are shown (so ``--with-paper`` on an empty store shows what the paper reported). With a
    terminal ``width``, a table whose joined cells (``0.83/0.00 (…)``) would not fit is shown as
    one table per metric instead, so no cell has to be cut.
    """
    measured = summary[summary["source"] == MEASURED] if not summary.empty else summary
    if kind is not None:
        measured = measured[measured["kind"] == kind] if not measured.empty else measured
    tables: list[TableData] = []
    groups: list[tuple[str, str, pd.DataFrame, pd.DataFrame]] = []
    if not measured.empty:
        for (dataset, protocol), g in measured.groupby(["dataset", "protocol"], sort=True):
            p = _paper_matches(paper, g["kind"].iloc[0], dataset, protocol, set(g["model"]))
            groups.append((dataset, protocol, g, p))
    elif paper is not None and not paper.empty:
        p_all = paper if kind is None else paper[paper["kind"] == kind]
        for (dataset, protocol), p in p_all.groupby(["dataset", "protocol"], sort=True):
            groups.append((dataset, protocol, p.iloc[0:0], p))
    for dataset, protocol, g, p in groups:
        k = (g if not g.empty else p)["kind"].iloc[0]
        both = pd.concat([g, p], ignore_index=True) if not p.empty else g.reset_index(drop=True)
        metric_cols = [m for m in catalogue.ordered(catalogue.METRICS) if m in both.columns and both[m].notna().any()]
        metrics = resolve_metrics(metric, k, metric_cols)
        build = resolve(get_kind(k).table) if get_kind(k).table else appearance_table
        made = build(both, dataset, protocol, metrics, with_source=not p.empty, measured=g, paper=paper)
        # Intervals are shown one metric per cell: a table with them is split per metric.
        if len(metrics) > 1 and ((width and any(min_width(t) > width for t in made)) or _has_intervals(both)):
            made = [t for m in metrics for t in build(both, dataset, protocol, [m], with_source=not p.empty,
                                                      measured=g, paper=None)]
        tables += made
    return tables


def _word_width(texts: Iterable[str]) -> int:
    """The longest word (a table cell wraps at spaces, never inside a word)."""
    return max((len(w) for t in texts for w in t.split()), default=1)


def min_width(t: TableData) -> int:
    """Terminal columns a rich table needs to show every word of every cell uncut: the widest
    word per column (the model column whole: it does not wrap), plus borders and padding."""
    cols = list(zip(t.columns, *t.rows)) if t.rows else [(c,) for c in t.columns]
    widths = [max(len(x) for x in cols[0])] + [_word_width(col) for col in cols[1:]]
    return sum(widths) + 3 * len(widths) + 1


def hooked_tables(frame: pd.DataFrame, kind: str | None = None, metric: str | None = None) -> list[TableData]:
    """The tables of the kinds of other shapes (divergence) among a records frame's results."""
    out: list[TableData] = []
    for k in all_kinds():
        wanted = kind in (None, k.name) and (metric is None or metric.lower() in {*k.aliases, *k.shown.get("classification", ())})
        if k.hooks is not None and wanted:
            out += k.hooks.tables(k.hooks.split(frame)[1])
    return out


def _source_cell(model: str, src: str) -> str:
    """The source column beside the paper: ``paper``, or ``dgbench`` with who trained the model's
    registered weights (``dgbench · torchvision V1``: the baselines are not the paper's
    re-implementation, so a measured IBN-vs-baseline gap mixes two training recipes)."""
    if src != MEASURED:
        return src
    from ..models.registry import get_pretrained_cfg
    from ..models.pretrained import weights_label

    try:
        label = weights_label(get_pretrained_cfg(model))
    except UnknownNameError:
        return src
    return src if label == "none" else f"{src} · {label}"


def row_groups(both: pd.DataFrame) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """``(row label, model, source, its summary rows)`` per model, variant kwargs, source and
    sample selection, in the tables' order: a model measured on a ``--subset``/``--limit`` is a
    row of its own, labelled so (``m [subset of 200]``), never beside full-set rows unmarked."""
    sel = [as_text(v) for v in both["selection"]] if "selection" in both.columns else [""] * len(both)
    keys = set(zip(both["model"], both["model_kwargs"], both["source"], sel))
    for model, kw, src, s in sorted(keys, key=lambda k: (natural(k[0]), k[1], k[2] != MEASURED, k[2], k[3])):
        mask = (both["model"] == model) & (both["model_kwargs"] == kw) & (both["source"] == src)
        yield row_label(model, kw, s), model, src, both[mask & pd.Series([x == s for x in sel], index=both.index)]


def selection_note(both: pd.DataFrame) -> str:
    """The caption's word on rows that measured part of the evaluation set, when there are any."""
    if "selection" not in both.columns or not any(as_text(v) for v in both["selection"]):
        return ""
    return "; [subset of N]/[first N]: measured on part of the evaluation set only, not comparable with full-set rows"


def appearance_table(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str],
                     with_source: bool, **_: Any) -> list[TableData]:
    """Table 1's shape (the default of a kind that names no table): models x conditions."""
    return [_appearance(both, dataset, protocol, metrics, with_source)]


def cross_domain_table(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str],
                       with_source: bool, **_: Any) -> list[TableData]:
    """Table 6's shape: models and training domains x test domains."""
    return [_cross_domain(both, dataset, protocol, metrics, with_source)]


def finetune_table(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str], with_source: bool,
                   measured: pd.DataFrame, paper: pd.DataFrame | None = None, **_: Any) -> list[TableData]:
    """Table 8's shape, with Table 7 beside it when the paper's numbers are joined."""
    tables = [_finetune(both, dataset, protocol, metrics, with_source)]
    if paper is not None:
        from .comparison import comparison_table

        tables += comparison_table(measured)
    return tables


def _appearance(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str],
                with_source: bool) -> TableData:
    refs = [r for r in both["reference"] if r]
    reference = max(sorted(set(refs)), key=refs.count) if refs else "origin"  # deterministic on ties
    measured = both[both["source"] == MEASURED]
    order_src = measured if not measured.empty else both
    shifts = list(dict.fromkeys(order_src.sort_values("order")["shift"]))
    shifts += [s for s in dict.fromkeys(both.sort_values("order")["shift"]) if s not in shifts]
    if reference in shifts:
        shifts.remove(reference)
        shifts.insert(0, reference)
    columns = ["model"] + (["source"] if with_source else []) + shifts
    rows, sources = [], []
    for label, model, src, sel in row_groups(both):
        by_shift = {r["shift"]: r for _, r in sel.iterrows()}
        cells = [_cell(by_shift[s], metrics, with_drop=True) if s in by_shift else "–" for s in shifts]
        rows.append([label] + ([_source_cell(model, src)] if with_source else []) + cells)
        sources.append(src)
    what = "/".join(METRIC_TITLES.get(m, m) for m in metrics)
    return TableData(
        title=f"{dataset} · {protocol}: {what} % (drop from {reference}, points)",
        columns=columns, rows=rows, sources=sources,
        caption="drop = shifted minus reference error; mean ± standard error over n runs where n > 1"
                + selection_note(both) + _interval_caption(both),
    )


def _interval_caption(both: pd.DataFrame) -> str:
    from .intervals import caption as intervals_caption
    from .versus import caption

    text = intervals_caption(both)
    if "vs_model" in both.columns and both["vs_model"].notna().any():
        text += caption(str(both["vs_model"].dropna().iloc[0]), int(both["vs_tests"].max()))
    return text


def _cross_domain(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str],
                  with_source: bool) -> TableData:
    measured = both[both["source"] == MEASURED]
    order_src = measured if not measured.empty else both
    domains = list(dict.fromkeys(list(order_src.sort_values("order")["train_domain"])
                                 + list(order_src.sort_values("order")["test_domain"])))
    domains += [d for d in dict.fromkeys(list(both["train_domain"]) + list(both["test_domain"]))
                if d not in domains]
    columns = ["model"] + (["source"] if with_source else []) + ["train \\ test"] + domains
    rows, sources = [], []
    for label, model, src, sel in row_groups(both):
        for train in domains:
            by_test = {r["test_domain"]: r for _, r in sel[sel["train_domain"] == train].iterrows()}
            if not by_test:
                continue
            cells = [_cell(by_test[d], metrics, with_drop=True) if d in by_test else "–" for d in domains]
            rows.append([label] + ([_source_cell(model, src)] if with_source else []) + [train] + cells)
            sources.append(src)
    what = "/".join(METRIC_TITLES.get(m, m) for m in metrics)
    return TableData(
        title=f"{dataset} · {protocol}: {what} % (drop from in-domain, points)",
        columns=columns, rows=rows, sources=sources,
        caption="rows: training domain; columns: test domain; drop = in-domain minus cross-domain "
                "(a loss reads positive); mean ± standard error over n runs where n > 1" + selection_note(both)
                + _interval_caption(both),
    )


def _finetune(both: pd.DataFrame, dataset: str, protocol: str, metrics: list[str],
              with_source: bool) -> TableData:
    """Table 8: one row per model (and source domain), one column per fraction of the target's train split."""
    fractions = sorted(set(both["fraction"]), key=float)
    columns = ["model"] + (["source"] if with_source else []) + ["train \\ test"] + [fraction_title(f) for f in fractions]
    rows, sources = [], []
    for label, _, src, sel in row_groups(both):
        for (train, test), g in sel.groupby(["train_domain", "test_domain"], sort=True):
            by = {r["fraction"]: r for _, r in g.iterrows()}
            cells = [_cell(by[f], metrics, with_drop=False) if f in by else "–" for f in fractions]
            rows.append([label] + ([src] if with_source else []) + [f"{train} → {test}"] + cells)
            sources.append(src)
    what = "/".join(METRIC_TITLES.get(m, m) for m in metrics)
    return TableData(
        title=f"{dataset} · {protocol}: {what} % after fine-tuning on a fraction of the target's train split",
        columns=columns, rows=rows, sources=sources,
        caption="rows: model, source → target domain; columns: fraction of the target's labelled train images "
                "(source only: no fine-tuning); mean ± standard error over n seeds where n > 1" + selection_note(both),
    )


# ---------------------------------------------------------------- rendering


def to_rich(t: TableData, width: int | None = None) -> Table:
    """A rich table; given the terminal ``width`` and a table wider than it, the columns get the
    widths of :func:`_fit_widths`, so cells wrap at their spaces (a drop under its value) and
    nothing is cut to "…" (rich's own squeezing cuts headers or overruns the width).

    A table with 95 % intervals that does not fit is drawn compact: no rules, and each interval
    as one word ``lo–hi`` under its value, so six numbers a cell fit five shifts in 80 columns."""
    cols = list(zip(t.columns, *t.rows)) if t.rows else [(c,) for c in t.columns]
    natural = sum(max(len(x) for x in col) + 3 for col in cols) + 1
    compact = width is not None and natural > width and any(_BRACKETS.search(x) for col in cols[1:] for x in col[1:])
    if compact:
        t = TableData(title=t.title, columns=t.columns, sources=t.sources,
                      rows=[[_BRACKETS.sub(r"\1–\2", c) for c in row] for row in t.rows],
                      caption=t.caption + "; here each interval lo–hi stands under its value")
        cols = list(zip(t.columns, *t.rows)) if t.rows else [(c,) for c in t.columns]
    table = (Table(title=t.title, caption=t.caption, title_justify="left", caption_justify="left", box=None,
                   padding=(0, 1), pad_edge=False, header_style="bold") if compact else
             Table(title=t.title, caption=t.caption, title_justify="left", caption_justify="left"))
    rules = dict(per_column=2, edge=-2) if compact else {}
    widths = _fit_widths(cols, width, **rules) if width is not None and natural > width else [None] * len(cols)
    for i, c in enumerate(t.columns):
        table.add_column(c, justify="left" if i == 0 or c in _TEXT_COLUMNS else "right",
                         no_wrap=i == 0 and widths[i] is None, overflow="fold", width=widths[i])
    for row, src in zip(t.rows, t.sources or [MEASURED] * len(t.rows)):
        table.add_row(*row, style="dim italic" if src == PAPER else None)
    return table


def _fit_widths(cols: list[tuple[str, ...]], width: int, per_column: int = 3, edge: int = 1) -> list[int | None]:
    """Column widths for a terminal ``width``: every cell's longest word, then, while room is left,
    each header's longest word, then the first column's texts whole (a model name on one line);
    a word still longer than its column folds. ``per_column`` and ``edge``: what the rules and
    padding take (3 a column + 1 with rules; 2 a column - 2 without rules or outer padding)."""
    widths = [_word_width(col[1:]) for col in cols]
    targets = ([_word_width(col[:1]) for col in cols], [max(len(x) for x in cols[0])] + widths[1:])
    for target in targets:
        for i, want in enumerate(target):
            spare = width - (sum(widths) + per_column * len(widths) + edge)
            widths[i] += max(0, min(want - widths[i], spare))
    return list(widths)


def to_csv(t: TableData) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.columns)
    w.writerows(t.rows)
    return buf.getvalue()


def to_markdown(t: TableData) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"**{esc(t.title)}**", "", "| " + " | ".join(esc(c) for c in t.columns) + " |",
             "|" + "|".join("---" if i == 0 or c in _TEXT_COLUMNS else "---:"
                            for i, c in enumerate(t.columns)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"_{esc(t.caption)}_"]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _latex_escape(s: str) -> str:
    s = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)
    return s.replace("±", r"$\pm$").replace("–", "--").replace("·", r"$\cdot$")


def to_latex(t: TableData) -> str:
    spec = "l" + "".join("l" if c in _TEXT_COLUMNS else "r" for c in t.columns[1:])
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_latex_escape(t.title)}}}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(c) for c in t.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


_RENDERERS = {"csv": to_csv, "markdown": to_markdown, "latex": to_latex}


def render_tables(tables: list[TableData], fmt: str = "rich", width: int | None = None) -> RenderableType | str:
    """Render built tables: a rich renderable for ``rich`` (fitted to ``width`` terminal columns
    when given), else text (tables separated by a blank line)."""
    if fmt not in FORMATS:
        raise UnknownNameError("table format", fmt, FORMATS)
    if fmt == "rich":
        return Group(*(to_rich(t, width) for t in tables))
    return "\n".join(_RENDERERS[fmt](t) for t in tables)


def render_table(results: pd.DataFrame | Iterable[Mapping[str, Any]], kind: str | None = None,
                 fmt: str = "rich", metric: str | None = None,
                 with_paper: bool = False, intervals_from: Any = None) -> RenderableType | str:
    """Records (dicts or a records frame) -> the paper-shaped table(s), rendered as ``fmt``.

    ``kind`` restricts to ``appearance`` or ``cross-domain`` tables (default: every kind present);
    ``metric`` picks the metric (``top1``/``top5`` for appearance; ``top1``, ``miou``,
    ``pixel_acc`` for cross-domain); ``with_paper`` joins the paper's reported rows;
    ``intervals_from`` (a results directory) adds 95 % intervals read from its per-image outcomes.
    """
    if kind is not None and kind not in kind_names():
        raise UnknownNameError("table kind", kind, kind_names())
    if fmt not in FORMATS:
        raise UnknownNameError("table format", fmt, FORMATS)
    frame = results if isinstance(results, pd.DataFrame) else records_to_frame(results)
    summary = summarize(frame)
    if intervals_from is not None and not isinstance(results, pd.DataFrame):
        from .intervals import add_intervals

        summary = add_intervals(summary, frame, {r["key"]: r for r in results}, intervals_from)
    paper = None
    if with_paper:
        from .published import load_paper

        paper = load_paper()
    hooked = kind is not None and get_kind(kind).hooks is not None
    width = get_console().width if fmt == "rich" else None  # the terminal's (COLUMNS)
    tables = [] if hooked else build_tables(summary, kind=kind, metric=metric, paper=paper, width=width)
    tables += hooked_tables(frame, kind)
    if not tables:
        raise NoResultsError("no results to tabulate" + (f" for {kind} protocols" if kind else ""))
    return render_tables(tables, fmt, width)


def markdown_page(lb: pd.DataFrame, csv_name: str) -> str:
    """The Markdown page published beside a leaderboard CSV: its tables in the paper's shape,
    with 95 % intervals where per-image outcomes lie beside the CSV (:mod:`.leaderboard_intervals`)."""
    from .leaderboard_intervals import page_intervals
    from .published import leaderboard_to_summary

    summary, footer = page_intervals(leaderboard_to_summary(lb), lb.attrs.get("path"))
    kind = get_kind(lb.attrs["kind"])
    # The CSV is sorted as strings; the page lists conditions in natural order (rgb+20 < rgb+100).
    cond = ["→".join(v) for v in zip(*(summary[c] for c in kind.conditions if c != "fraction"))]
    rank = {c: i for i, c in enumerate(sorted(set(cond), key=natural))}
    summary["order"] = [rank[c] for c in cond]
    dataset, protocol = summary["dataset"].iloc[0], summary["protocol"].iloc[0]
    parts = [f"# Leaderboard: {dataset}, {protocol}", "",
             f"Measured by dgbench; generated from [`{csv_name}`]({csv_name}) by "
             "`dgbench leaderboard publish` (do not edit by hand). Schema: `README.md`.", ""]
    metric_sets = [[m] for m in lb.attrs["metrics"]] if kind.page_per_metric else [None]
    for metrics in metric_sets:
        for t in build_tables(summary, kind=kind.name, metric=metrics[0] if metrics else None):
            parts.append(to_markdown(t))
    return "\n".join(parts + ([footer] if footer else []))

"""The leaderboard site: ``index.html`` plus one self-contained page per published leaderboard.

Built from the leaderboard CSVs (the published numbers, validated by :func:`load_leaderboard`),
their provenance sidecars when present (:mod:`.provenance`) and the paper's numbers; rendered by
:mod:`.site_pages`. Every page embeds its data, styles, script and plots, so it works offline and
from ``file://``; the same inputs give the same bytes (no clock is read, only the records' dates).
Each file is written atomically, and an unchanged file is left untouched.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from .conditions import condition_key, natural
from .corruption import corruption_grids
from .csvio import copy_if_changed, output_dir, write_if_changed
from .frame import MEASURED, variant_label
from .kinds import ResultKind, get_kind
from .csvio import fmt_number
from .leaderboard import leaderboard_name
from .published import leaderboard_to_summary, load_leaderboard, load_paper, paper_files
from .site_model import PAPER, Board, Cell, Grid, Row  # noqa: F401 - site_pages reads them here
from .provenance import (ROW_KEY, attach_values, provenance_by_leaderboard, published_values, read_sidecar,
                         sidecar_path, sidecar_text)
from .tables import NoResultsError, _paper_matches

PLOT_DPI = 110  # as `dgbench plot` draws them


def _cell(r: Mapping[str, Any], metric: str) -> Cell | None:
    value = fmt_number(r.get(metric))
    if not value:
        return None
    n = r.get("n")
    n = None if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    return Cell(value, fmt_number(r.get(f"{metric}_drop")), fmt_number(r.get(f"{metric}_se")), n)


def _runs(sel: pd.DataFrame, sidecar: Mapping[tuple, dict] | None,
          metrics: tuple[str, ...]) -> list[dict] | None:
    """The runs behind a table row's cells, from the sidecar; None unless it records every cell
    with the values the CSV publishes (a stale sidecar must not lend its runs to new numbers)."""
    if sidecar is None:
        return None
    runs = []
    for _, r in sel.iterrows():
        entry = sidecar.get(tuple(str(r.get(c, "") or "") for c in ROW_KEY))
        if entry is None or entry["values"] != published_values(r, metrics):
            return None
        runs += entry["runs"]
    return runs or None


def _conditions(both: pd.DataFrame, kind: ResultKind, protocol: str) -> tuple[list[str], str]:
    """The table's columns, measured first, in the protocol's order (the reference first, as the
    paper and ``dgbench table`` print them; other conditions naturally); and the reference."""
    measured = both[both["source"] == MEASURED]
    key = condition_key(protocol) if kind.protocol_order else (kind.column_key or natural)
    refs = sorted(r for r in measured["reference"] if r) if kind.protocol_order else []
    reference = max(sorted(set(refs)), key=refs.count) if refs else ""
    # A square kind (train x test domains) has a column for every domain, trained on or tested.
    span = [kind.column] + ([kind.split_rows[0]] if kind.square else [])
    cols = sorted({v for c in span for v in measured[c]}, key=key)
    cols += sorted({v for c in span for v in both[c]} - set(cols), key=key)
    if reference in cols:
        cols.remove(reference)
        cols.insert(0, reference)
    return cols, reference


def _row_split(part: pd.DataFrame, kind: ResultKind, conditions: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """A model's rows: one, or one per value of the kind's other conditions (the training domain
    in the order of the columns; source -> target pairs)."""
    if not kind.split_rows:
        return [("", part)]
    keys = list(dict.fromkeys(zip(*(part[c] for c in kind.split_rows))))
    if kind.square:  # training domains in the columns' order
        keys.sort(key=lambda k: conditions.index(k[0]) if k[0] in conditions else len(conditions))
    out = []
    for k in keys:
        mask = pd.Series(True, index=part.index)
        for c, v in zip(kind.split_rows, k):
            mask &= part[c] == v
        out.append((" → ".join(k), part[mask]))
    return out


def _caption(grid: Grid, kind: ResultKind) -> str:
    better = "higher" if grid.higher_is_better else "lower"
    text = f"{grid.title} in {grid.unit} ({better} is better)"
    if kind.drop_from:
        drop = f"drop from {grid.reference}" if grid.reference else f"drop from {kind.drop_from}"
        text += f", with the {drop} in points in brackets (a loss reads positive)"
    return f"{text}. {kind.describe}; mean ± standard error and n where a row averages several runs."


def build_grid(both: pd.DataFrame, kind: ResultKind, protocol: str, metric: str,
               metrics: tuple[str, ...], sidecar) -> Grid:
    """One metric's table from measured and paper summary rows (the paper's row order); the
    ``_csv`` column names the CSV each row comes from (a link relative to the page)."""
    conditions, reference = _conditions(both, kind, protocol)
    keys = sorted({(m, kw, s) for m, kw, s in zip(both["model"], both["model_kwargs"], both["source"])},
                  key=lambda k: (natural(k[0]), k[1], k[2] != MEASURED, k[2]))
    rows: list[Row] = []
    for model, kw, src in keys:
        sel = both[(both["model"] == model) & (both["model_kwargs"] == kw) & (both["source"] == src)]
        for train, part in _row_split(sel, kind, conditions):
            by = {r[kind.column]: r for _, r in part.iterrows()}
            notes = sorted({str(n) for n in part["note"] if n})
            # A measured row's note says when it measured part of the evaluation set only.
            label = variant_label(model, kw) + (f" [{'; '.join(notes)}]" if notes and src == MEASURED else "")
            rows.append(Row(label, src, train,
                            [_cell(by[c], metric) if c in by else None for c in conditions],
                            _runs(part, sidecar, metrics) if src == MEASURED else None,
                            "; ".join(notes), str(part["_csv"].iloc[0])))
    grid = Grid(metric, kind.name, conditions, rows, reference,
                columns=[kind.column_title(c) for c in conditions], row_head=kind.row_head)
    grid.caption = _caption(grid, kind)
    return grid


def _plots(summary: pd.DataFrame, metrics: Iterable[str]) -> list[tuple[str, bytes]]:
    """`dgbench plot`'s figure of each metric, as PNG bytes (no software tag: byte-stable)."""
    from .plot import drops_figure

    out = []
    for m in metrics:
        try:
            fig = drops_figure(summary, m)
        except NoResultsError:  # only reference rows: nothing has a drop to draw
            continue
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PLOT_DPI, metadata={"Software": None})
        out.append((m, buf.getvalue()))
    return out


def build_board(csv_path: Path, paper: pd.DataFrame | None) -> Board:
    """A validated leaderboard CSV (+ sidecar, + matching paper rows) -> the page's content."""
    lb = load_leaderboard(csv_path)
    if lb.empty:
        raise DgbenchError(f"{csv_path}: the leaderboard has no rows; nothing to publish")
    kind = get_kind(lb.attrs["kind"])
    if kind.hooks is not None:  # a kind of another shape draws its own page
        return kind.hooks.board(csv_path, lb)
    task, metrics = lb.attrs["task"], tuple(lb.attrs["metrics"])
    summary = leaderboard_to_summary(lb)
    dataset, protocol = summary["dataset"].iloc[0], summary["protocol"].iloc[0]
    measured = summary[summary["source"] == MEASURED]
    # The tables' own join: same kind and setting, models by canonical name, clean-error rows of
    # Tables 2, 4 and 5 in the reference column.
    p = _paper_matches(paper, kind.name, dataset, protocol, set(measured["model"])) if paper is not None else pd.DataFrame()
    both = pd.concat([summary.assign(_csv=csv_path.name),
                      p.assign(_csv=[f"paper/{leaderboard_name(d, pr)}.csv" for d, pr in zip(p["dataset"], p["protocol"])])],
                     ignore_index=True) if not p.empty else summary.assign(_csv=csv_path.name)
    paper_csvs = sorted(set(both["_csv"]) - {csv_path.name})
    sidecar = read_sidecar(csv_path)
    grids = [build_grid(both, kind, protocol, m, metrics, sidecar) for m in metrics]
    measured = _in_page_order(measured, kind, grids[0].conditions)  # plots: bars as the columns
    grids, after = _with_statistics(csv_path, grids)
    drawn = metrics[:1] if kind.panels else metrics  # a figure of the kind's own draws the same for every metric
    return Board(csv_path.stem, dataset, protocol, kind.name, task, metrics, csv_path.name, grids,
                 _plots(measured, drawn), sidecar is not None, paper_csvs,
                 summaries=corruption_grids(summary, protocol), after=after, plot_note=kind.plot_note,
                 conditions=f"{len(grids[0].conditions)} {kind.column.replace('_', ' ')}s")


def _with_statistics(csv_path: Path, grids: list[Grid]) -> tuple[list[Grid], list[Grid]]:
    """With per-image outcomes beside the CSV: each error's intervals on hover, and the error
    consistency heat map after the tables (:mod:`.site_stats`)."""
    from .leaderboard_outcomes import load_sidecar
    from .site_pages import shade
    from .site_stats import consistency_grid, with_intervals

    side = load_sidecar(csv_path)
    if side is None:
        return grids, []
    kappa = consistency_grid(side, grids[0].conditions, shade)
    return [with_intervals(g, side) for g in grids], [kappa] if kappa is not None else []


def _in_page_order(summary: pd.DataFrame, kind: ResultKind, conditions: list[str]) -> pd.DataFrame:
    """``order`` set so that plots list conditions as the page's columns do (the CSV is sorted
    as strings)."""
    def rank(row: Mapping[str, Any]) -> tuple:
        return tuple(conditions.index(row[c]) if row[c] in conditions else len(conditions)
                     for c in (*kind.split_rows, kind.column))

    ranks = [rank(r) for _, r in summary.iterrows()]
    index = {r: i for i, r in enumerate(sorted(set(ranks)))}
    return summary.assign(order=[index[r] for r in ranks])


def leaderboard_csvs(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Leaderboard CSVs named directly or found (non-recursively) in the folders given."""
    out: list[Path] = []
    for s in map(Path, sources):
        if s.is_dir():
            out += sorted(s.glob("*.csv"))
        elif s.is_file() and s.suffix == ".csv":
            out.append(s)
        else:
            raise DgbenchError(f"{s}: neither a leaderboard CSV nor a folder of them")
    if not out:
        raise DgbenchError("no leaderboard CSVs found in " + ", ".join(map(str, sources))
                           + " (publish some with `dgbench leaderboard publish`)")
    return sorted(set(out), key=lambda p: p.name)


def build_site(csv_paths: Iterable[Path], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``index.html`` and ``<stem>.html`` per leaderboard into ``out_dir``; return the paths.

    The CSVs (with their sidecars) and the paper CSVs that the pages link to are copied beside
    the pages, so the folder can be served or opened as it is.
    """
    from . import site_pages

    out = output_dir(out_dir)
    paper = load_paper()
    csvs = list(csv_paths)
    stems = [p.stem for p in csvs]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise DgbenchError(f"two leaderboards named {', '.join(dup)}: publish them into separate sites")
    boards = [build_board(p, paper) for p in csvs]
    written: list[Path] = []
    for path, board in zip(csvs, boards):
        written += copy_if_changed(path, out / path.name)
        if sidecar_path(path).is_file():
            written += copy_if_changed(sidecar_path(path), sidecar_path(out / path.name))
        page = out / board.page
        write_if_changed(page, site_pages.board_page(board))
        written.append(page)
    paper_links = []
    for pf in paper_files():
        written += copy_if_changed(pf, out / "paper" / pf.name)
        paper_links.append(f"paper/{pf.name}")
    index = out / "index.html"
    write_if_changed(index, site_pages.index_page(boards, paper_links))
    written.append(index)
    return written


def publish_site(frame: pd.DataFrame, records: Mapping[str, Mapping[str, Any]],
                 out_dir: str | os.PathLike) -> list[Path]:
    """After ``publish``: provenance sidecars for the leaderboards just written, then the site of
    every leaderboard in ``out_dir``. ``records`` maps record keys to the stored records."""
    out = Path(out_dir)
    written = []
    for (dataset, protocol), rows in provenance_by_leaderboard(frame, records).items():
        csv_path = out / f"{leaderboard_name(dataset, protocol)}.csv"
        path = sidecar_path(csv_path)
        write_if_changed(path, sidecar_text(attach_values(rows, load_leaderboard(csv_path))))
        written.append(path)
    return written + build_site(leaderboard_csvs([out]), out)

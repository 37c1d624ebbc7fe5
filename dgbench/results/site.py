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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from . import catalogue
from .frame import MEASURED, variant_label
from .csvio import copy_if_changed, output_dir, write_if_changed
from .leaderboard import _fmt, leaderboard_name, leaderboard_to_summary, load_leaderboard, load_paper
from .provenance import (ROW_KEY, attach_values, provenance_by_leaderboard, published_values, read_sidecar,
                         sidecar_path, sidecar_text)
from .tables import NoResultsError, _paper_matches

PAPER = "paper"
PLOT_DPI = 110  # as `dgbench plot` draws them


@dataclass(frozen=True)
class Cell:
    value: str  # the metric exactly as the CSV prints it
    drop: str  # its drop ("" on reference cells)
    se: str  # its standard error ("" for one run)
    n: int | None  # runs averaged (None for numbers dgbench did not measure)

    @property
    def drop_value(self) -> float | None:
        return float(self.drop) if self.drop else None


@dataclass
class Row:
    label: str  # the model as tables name it: ``small_resnet`` or ``m (ibn_ratio=0.25)``
    source: str  # ``dgbench`` or ``paper``
    train: str  # cross-domain: the training domain; appearance: ""
    cells: list[Cell | None]
    runs: list[dict] | None  # provenance: the runs behind the row's cells; None = not recorded
    note: str = ""  # paper rows: which table of the paper
    csv: str = ""  # the CSV the row's numbers come from (a link, relative to the page)


@dataclass
class Grid:
    """One metric of one leaderboard in the paper's shape: models (x train domain) x conditions."""

    metric: str
    kind: str
    conditions: list[str]  # shifts (reference first) or test domains
    rows: list[Row]
    reference: str = ""

    @property
    def title(self) -> str:
        return catalogue.title(self.metric)

    @property
    def higher_is_better(self) -> bool:
        return catalogue.higher_is_better(self.metric)

    @property
    def max_drop(self) -> float:
        drops = [abs(c.drop_value) for r in self.rows for c in r.cells if c and c.drop_value is not None]
        return max(drops, default=0.0)


@dataclass
class Board:
    stem: str
    dataset: str
    protocol: str
    kind: str
    task: str
    metrics: tuple[str, ...]
    csv_name: str
    grids: list[Grid]
    plots: list[tuple[str, bytes]] = field(default_factory=list)  # (metric, PNG)
    provenance: bool = False  # a sidecar was found
    paper_csvs: list[str] = field(default_factory=list)

    @property
    def models(self) -> int:
        return len({r.label for g in self.grids[:1] for r in g.rows if r.source == MEASURED})

    @property
    def page(self) -> str:
        return f"{self.stem}.html"


def _natural(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _cell(r: Mapping[str, Any], metric: str) -> Cell | None:
    value = _fmt(r.get(metric))
    if not value:
        return None
    n = r.get("n")
    n = None if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    return Cell(value, _fmt(r.get(f"{metric}_drop")), _fmt(r.get(f"{metric}_se")), n)


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


def _conditions(both: pd.DataFrame, kind: str) -> tuple[list[str], str]:
    """Columns in natural order, measured first, the reference first; and the reference."""
    measured = both[both["source"] == MEASURED]
    if kind == "appearance":
        refs = sorted(r for r in measured["reference"] if r)
        reference = max(sorted(set(refs)), key=refs.count) if refs else "origin"
        cols = sorted(set(measured["shift"]), key=_natural)
        cols += sorted(set(both["shift"]) - set(cols), key=_natural)
        if reference in cols:
            cols.remove(reference)
            cols.insert(0, reference)
        return cols, reference
    cols = sorted(set(measured["train_domain"]) | set(measured["test_domain"]), key=_natural)
    extra = set(both["train_domain"]) | set(both["test_domain"])
    return cols + sorted(extra - set(cols), key=_natural), ""


def build_grid(both: pd.DataFrame, kind: str, metric: str, metrics: tuple[str, ...], sidecar) -> Grid:
    """One metric's table from measured and paper summary rows (the paper's row order); the
    ``_csv`` column names the CSV each row comes from (a link relative to the page)."""
    conditions, reference = _conditions(both, kind)
    cond_col = "shift" if kind == "appearance" else "test_domain"
    keys = sorted({(m, kw, s) for m, kw, s in zip(both["model"], both["model_kwargs"], both["source"])},
                  key=lambda k: (_natural(k[0]), k[1], k[2] != MEASURED, k[2]))
    rows: list[Row] = []
    for model, kw, src in keys:
        sel = both[(both["model"] == model) & (both["model_kwargs"] == kw) & (both["source"] == src)]
        trains = [""] if kind == "appearance" else [d for d in conditions if d in set(sel["train_domain"])]
        for train in trains:
            part = sel if kind == "appearance" else sel[sel["train_domain"] == train]
            by = {r[cond_col]: r for _, r in part.iterrows()}
            notes = sorted({str(n) for n in part["note"] if n})
            # A measured row's note says when it measured part of the evaluation set only.
            label = variant_label(model, kw) + (f" [{'; '.join(notes)}]" if notes and src == MEASURED else "")
            rows.append(Row(label, src, train,
                            [_cell(by[c], metric) if c in by else None for c in conditions],
                            _runs(part, sidecar, metrics) if src == MEASURED else None,
                            "; ".join(notes), str(part["_csv"].iloc[0])))
    return Grid(metric, kind, conditions, rows, reference)


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


SITE_KINDS = ("appearance", "cross-domain")  # the kinds a page can show


def build_board(csv_path: Path, paper: pd.DataFrame | None) -> Board:
    """A validated leaderboard CSV (+ sidecar, + matching paper rows) -> the page's content."""
    lb = load_leaderboard(csv_path)
    if lb.empty:
        raise DgbenchError(f"{csv_path}: the leaderboard has no rows; nothing to publish")
    kind, task, metrics = lb.attrs["kind"], lb.attrs["task"], tuple(lb.attrs["metrics"])
    summary = leaderboard_to_summary(lb)
    cond = summary["shift"] if kind == "appearance" else summary["train_domain"] + "→" + summary["test_domain"]
    rank = {c: i for i, c in enumerate(sorted(set(cond), key=_natural))}
    summary["order"] = [rank[c] for c in cond]  # the CSV is sorted as strings; plots read naturally
    dataset, protocol = summary["dataset"].iloc[0], summary["protocol"].iloc[0]
    measured = summary[summary["source"] == MEASURED]
    # The tables' own join: same kind and setting, models by canonical name, clean-error rows of
    # Tables 2, 4 and 5 in the reference column.
    p = _paper_matches(paper, kind, dataset, protocol, set(measured["model"])) if paper is not None else pd.DataFrame()
    both = pd.concat([summary.assign(_csv=csv_path.name),
                      p.assign(_csv=[f"paper/{leaderboard_name(d, pr)}.csv" for d, pr in zip(p["dataset"], p["protocol"])])],
                     ignore_index=True) if not p.empty else summary.assign(_csv=csv_path.name)
    paper_csvs = sorted(set(both["_csv"]) - {csv_path.name})
    sidecar = read_sidecar(csv_path)
    grids = [build_grid(both, kind, m, metrics, sidecar) for m in metrics]
    return Board(csv_path.stem, dataset, protocol, kind, task, metrics, csv_path.name, grids,
                 _plots(measured, metrics), sidecar is not None, paper_csvs)


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
    # Pages show Table 1 and Table 6 shapes (models x shifts, train x test domains); leaderboards of
    # other shapes (divergence: a row per layer; finetune: fractions) are CSV + Markdown only.
    csvs = [p for p in csv_paths if load_leaderboard(p).attrs["kind"] in SITE_KINDS]
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
    from .leaderboard import paper_files

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

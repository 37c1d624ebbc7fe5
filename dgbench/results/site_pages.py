"""HTML of the leaderboard site: the index and one page per leaderboard (see :mod:`.site`).

Plain HTML5 with real ``<table>`` markup (``<th scope>``, a ``<caption>``, header buttons that
carry ``aria-sort``), the styles and script of ``dgbench/assets/site/`` inlined, and plots as
``data:`` PNGs, so a page is one self-contained file. Everything here is a pure function of its
inputs: no clock, no environment, no randomness.
"""
from __future__ import annotations

import base64
from functools import lru_cache
from html import escape

from ..config import asset_path
from . import catalogue
from .frame import MEASURED
from .provenance import RUN_FIELDS
from .site_model import PAPER, Board, Cell, Grid, Row

# Shading: a drop (a loss) mixes white toward warm, a gain (negative drop) toward cool; the
# strongest tint stays light enough for black text to keep a contrast above 7:1.
LOSS_RGB, GAIN_RGB = (236, 112, 84), (84, 140, 236)
MAX_TINT = 0.55


def e(text: object) -> str:
    return escape(str(text), quote=True)


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return asset_path("site", name).read_text(encoding="utf-8")


def shade(drop: float | None, scale: float) -> str:
    """The background colour of a cell with this drop, as ``#rrggbb``; "" for no shading."""
    if drop is None or scale <= 0 or drop == 0:
        return ""
    t = MAX_TINT * min(abs(drop) / scale, 1.0)
    target = LOSS_RGB if drop > 0 else GAIN_RGB
    return "#" + "".join(f"{round(255 + (c - 255) * t):02x}" for c in target)


def _head(title: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{e(title)}</title>\n<style>\n{_asset('site.css')}</style>\n</head>\n<body>\n")


def _foot(script: bool) -> str:
    js = f"<script>\n{_asset('site.js')}</script>\n" if script else ""
    return ("<footer><p>Generated from the published CSVs by <code>dgbench leaderboard publish "
            "--html</code> or <code>dgbench leaderboard site</code>; do not edit by hand.</p></footer>\n"
            + js + "</body>\n</html>\n")


# ---------------------------------------------------------------- one leaderboard


def _cell_html(cell: Cell | None, col: int, scale: float) -> str:
    if cell is None or not cell.value:
        why = cell.title if cell is not None and cell.title else "not measured"
        return f'<td data-col="{col}" data-sort=""><span class="missing" title="{e(why)}">–</span></td>'
    bg = cell.shade or shade(cell.drop_value, scale)
    style = f' style="background-color:{bg}"' if bg else ""
    style += f' title="{e(cell.title)}" class="ci"' if cell.title else ""
    parts = [f'<span class="v">{e(cell.value)}</span>']
    if cell.se:
        parts.append(f' <span class="se">± {e(cell.se)}</span>')
    if cell.drop:
        parts.append(f' <span class="d">({e(cell.drop)})</span>')
    if cell.n and cell.n > 1:
        parts.append(f' <span class="n">n={cell.n}</span>')
    if cell.mark:
        parts.append(f' <span class="mark">{e(cell.mark)}</span>')
    return f'<td data-col="{col}" data-sort="{e(cell.value)}"{style}>{"".join(parts)}</td>'


def _distinct(runs: list[dict], name: str) -> list[str]:
    return sorted({str(r.get(name)) for r in runs if r.get(name) not in (None, "")})


def _provenance(row: Row, recorded: bool) -> str:
    if row.source == PAPER:
        what = e(row.note) if row.note else "the paper"
        return (f'<p class="prov">Reported by the paper ({what}); '
                f'<a href="{e(row.csv)}">{e(row.csv)}</a></p>')
    if not recorded:  # the page says so once, instead of on every row
        return ""
    if row.runs is None:
        return ('<details class="prov"><summary>provenance</summary><p>Not recorded: the sidecar '
                'does not cover this row with the numbers the CSV publishes.</p></details>')
    seeds = ", ".join(_distinct(row.runs, "seed")) or "not recorded"
    items = [f"<dt>records</dt><dd>{len(row.runs)} (one per condition and seed)</dd>",
             f"<dt>seeds</dt><dd>{e(seeds)}</dd>"]
    for name, label in RUN_FIELDS:
        values = _distinct(row.runs, name)
        if name == "started_at" and len(values) > 1:
            values = [f"{values[0]} … {values[-1]}"]  # first and last run
        shown = "<br>".join(f"<code>{e(v)}</code>" for v in values) or "not recorded"
        items.append(f"<dt>{e(label)}</dt><dd>{shown}</dd>")
    return ('<details class="prov"><summary>provenance</summary><dl>'
            + "".join(items) + "</dl></details>")


def _row_html(row: Row, grid: Grid, with_source: bool, recorded: bool) -> str:
    paper = row.source == PAPER
    cls = ' class="paper"' if paper else ""
    mark = ' <span class="badge">paper</span>' if paper else ""
    cells = [f'<th scope="row" data-col="0" data-sort="{e(row.label)}">'
             f'<span class="model">{e(row.label)}</span>{mark}{_provenance(row, recorded and grid.kind != "consistency")}</th>']
    col = 1
    if with_source:
        cells.append(f'<td class="text" data-col="{col}" data-sort="{e(row.source)}">{e(row.source)}</td>')
        col += 1
    if grid.row_head:
        cells.append(f'<td class="text" data-col="{col}" data-sort="{e(row.train)}">{e(row.train)}</td>')
        col += 1
    scale = grid.max_drop
    cells += [_cell_html(c, col + i, scale) for i, c in enumerate(row.cells)]
    return (f'<tr{cls} data-source="{e(row.source)}" data-model="{e(row.label)}">'
            + "".join(cells) + "</tr>")


def _header(label: str, kind: str) -> str:
    return (f'<th scope="col" class="{kind}"><button type="button" data-type="{kind}">{e(label)}'
            '<span class="arrow" aria-hidden="true"></span></button></th>')


def _grid_html(board: Board, grid: Grid, idx: int) -> str:
    with_source = any(r.source == PAPER for r in grid.rows)
    heads = [_header("model", "text")] + ([_header("source", "text")] if with_source else [])
    if grid.row_head:
        heads.append(_header(grid.row_head, "text"))
    heads += [_header(c, "num") for c in grid.headers]
    hid = f"grid-{idx}"
    heading = grid.heading or f"{grid.title} ({grid.unit})"
    body = "\n".join(_row_html(r, grid, with_source, board.provenance) for r in grid.rows)
    return (f'<section aria-labelledby="{hid}">\n<h2 id="{hid}">{e(heading)}</h2>\n'
            f'<div class="scroll" role="region" aria-labelledby="{hid}" tabindex="0">\n'
            f'<table class="board" data-metric="{e(grid.metric)}">\n<caption>{e(grid.caption)}</caption>\n'
            f'<thead><tr>{"".join(heads)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</div>\n'
            "</section>\n")


def _plots_html(board: Board) -> str:
    if not board.plots:
        return ""
    figs = []
    for metric, png in board.plots:
        title = next(g.title for g in board.grids if g.metric == metric)
        what = e(board.plot_note.format(title=title) if board.plot_note else f"{title} drop per model (points)")
        data = base64.b64encode(png).decode("ascii")
        figs.append(f'<figure><img src="data:image/png;base64,{data}" alt="Chart of the {what}; the numbers '
                    f'are in the tables above."><figcaption>{what}; drawn as <code>dgbench plot --metric '
                    f"{e(metric)}</code> draws it</figcaption></figure>")
    return '<section aria-labelledby="plots">\n<h2 id="plots">Plots</h2>\n' + "\n".join(figs) + "\n</section>\n"


def board_page(board: Board) -> str:
    """The HTML page of one leaderboard."""
    title = f"{board.dataset} · {board.protocol}"
    measured = sum(r.source == MEASURED for r in board.grids[0].rows)
    paper = sum(r.source == PAPER for r in board.grids[0].rows)
    links = [f'<a href="{e(board.csv_name)}">{e(board.csv_name)}</a>'] + [
        f'<a href="{e(p)}">{e(p)}</a> (the paper\'s numbers)' for p in board.paper_csvs]
    paper_note = (f" Rows marked <span class=\"badge\">paper</span> ({paper}) are the IBN-Net paper's "
                  "reported numbers, shown beside the measured ones." if paper else "")
    prov = ("Open a row's <em>provenance</em> for the runs behind it (weights sha256, dataset "
            "fingerprint, precision, dgbench version, git commit, date)." if board.provenance else
            "This leaderboard was published without a provenance sidecar, so its runs' provenance "
            "is not shown.")
    grids = "".join(_grid_html(board, g, i) for i, g in enumerate(board.summaries + board.grids + board.after))
    shading = ('Cells are shaded by their drop: <span class="swatch loss">warmer: a larger loss</span> '
               '<span class="swatch gain">cooler: a gain</span>, relative to the largest drop in the table. '
               if any(g.max_drop > 0 for g in board.grids) else "")  # fine-tuning, divergence: no drops
    return (_head(f"{title} — dgbench leaderboard")
            + '<a class="skip" href="#main">Skip to the tables</a>\n'
            + '<header>\n<nav aria-label="Site"><a href="index.html">All leaderboards</a></nav>\n'
            + f"<h1>Leaderboard: {e(title)}</h1>\n"
            + f"<p>{e(board.kind)} protocol, {e(board.task)}; {measured} measured rows per table."
            + f"{paper_note} Data: {', '.join(links)}.</p>\n</header>\n"
            + '<main id="main">\n<div class="controls">\n<label for="filter">Filter models</label>\n'
            + '<input id="filter" type="search" autocomplete="off" spellcheck="false" '
            + 'aria-describedby="filter-status">\n'
            + '<p id="filter-status" class="status" role="status" aria-live="polite"></p>\n</div>\n'
            + f'<p class="legend">{shading}Sort by a column with its header button. {prov}</p>\n'
            + grids + _plots_html(board) + "</main>\n" + _foot(script=True))


# ---------------------------------------------------------------- index


def index_page(boards: list[Board], paper_csvs: list[str]) -> str:
    """The site's front page: every leaderboard, its shape and its data."""
    rows = []
    for b in boards:
        g = b.grids[0]
        metrics = ", ".join(e(catalogue.title(m)) for m in b.metrics)
        rows.append(f'<tr><th scope="row"><a href="{e(b.page)}">{e(b.dataset)} · {e(b.protocol)}</a></th>'
                    f"<td>{e(b.task)}</td><td>{metrics}</td><td>{b.models}</td>"
                    f"<td>{e(b.conditions or len(g.conditions))}</td><td>{'yes' if b.provenance else 'not recorded'}</td>"
                    f'<td><a href="{e(b.csv_name)}">{e(b.csv_name)}</a></td></tr>')
    heads = "".join(f'<th scope="col">{h}</th>' for h in
                    ("leaderboard", "task", "metrics", "models", "conditions", "provenance", "data"))
    papers = "".join(f'<li><a href="{e(p)}">{e(p)}</a></li>' for p in paper_csvs)
    return (_head("dgbench leaderboards")
            + "<header>\n<h1>dgbench leaderboards</h1>\n<p>Domain-generalization results measured "
            + "by dgbench, in the shapes of the IBN-Net paper's tables (Pan et al., ECCV 2018).</p>\n"
            + '</header>\n<main id="main">\n<div class="scroll" role="region" aria-label="Leaderboards" '
            + f'tabindex="0">\n<table class="index">\n<caption>Published leaderboards</caption>\n'
            + f"<thead><tr>{heads}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n</div>\n"
            + ("<h2>The paper's numbers</h2>\n<p>Transcribed from the paper into the same schema "
               + f"(<code>source = paper</code>):</p>\n<ul>{papers}</ul>\n" if papers else "")
            + "</main>\n" + _foot(script=False))

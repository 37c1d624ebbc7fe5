"""Leaderboards of the kinds with a schema of their own (divergence, shape bias, leave-one-out):
how they are written beside their Markdown page, read back and checked, in one place.

A kind gives its rows per (dataset, protocol), how one CSV row is parsed and validated, and the
tables its page shows; writing and reading are the same for every such kind.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UnknownNameError
from .check import DIFF_COLUMNS, EPS, CheckResult
from .csvio import LeaderboardError, check_unique, csv_rows, csv_text, output_dir, write_if_changed
from .frame import records_to_frame
from .leaderboard import leaderboard_name
from .tables import to_markdown

Rows = Mapping[tuple[str, str], tuple[list[str], list[list[str]]]]


def split_kind(results: pd.DataFrame | Iterable[Mapping[str, Any]],
               mask_of: Callable[[pd.DataFrame], pd.Series]) -> tuple[Any, pd.DataFrame]:
    """``(the other records, the kind's records as a records frame)``: a ResultKind's ``split``, the
    kind's rows picked by ``mask_of(records frame)``. A summary frame passes whole: it holds no records."""
    if not isinstance(results, pd.DataFrame):
        results = records_to_frame(results)
    if "n" in results.columns and "source" in results.columns:
        return results, results.iloc[0:0]
    mask = mask_of(results)
    return results[~mask], results[mask]


def publish_pages(groups: Rows, out_dir: str | os.PathLike, what: str, read: Callable[[Path], pd.DataFrame],
                  tables: Callable[[pd.DataFrame], list[Any]]) -> list[Path]:
    """Write ``<dataset>-<protocol>.csv`` per group and its ``.md`` page, rendered from the CSV
    just written (``read``, then ``tables`` of the validated frame); ``what`` names the kind."""
    out = output_dir(out_dir)
    written: list[Path] = []
    for (dataset, protocol), (header, rows) in groups.items():
        stem = leaderboard_name(dataset, protocol)
        csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
        write_if_changed(csv_path, csv_text(header, rows))
        parts = [f"# Leaderboard: {dataset}, {protocol} ({what})", "",
                 f"Measured by dgbench; generated from [`{csv_path.name}`]({csv_path.name}) by "
                 "`dgbench leaderboard publish` (do not edit by hand). Schema: `README.md`.", ""]
        parts += [to_markdown(t) for t in tables(read(csv_path))]
        write_if_changed(md_path, "\n".join(parts))
        written += [csv_path, md_path]
    return written


def read_rows(p: Path, reader: Any, header: list[str], what: str, parse: Callable[[Path, int, list[str]], dict],
              key: Sequence[str], attrs: Mapping[str, Any]) -> pd.DataFrame:
    """Read and validate a leaderboard of the schema ``header`` (``reader``: a ``csv.reader`` past
    the header, or None to open ``p`` and check its header); errors name the file and line."""
    if reader is None:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rd = csv.reader(f)
            if next(rd, None) != header:
                raise LeaderboardError(f"{p}:1: not a {what} leaderboard (expected {','.join(header)})")
            return read_rows(p, rd, header, what, parse, key, attrs)
    records = [parse(p, line, row) for line, row in csv_rows(reader)]
    check_unique(p, records, (*key, "source"))
    frame = pd.DataFrame(records, columns=header + ["line"])
    frame.attrs.update(attrs, path=str(p))
    return frame


def column_tolerances(given: Mapping[str, float], names: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Per compared column, the tolerance of the first of its ``names`` (most specific first, e.g.
    ``("divergence_nats", "divergence", "all")``) that was ``given``, else 0; a given name no column
    knows is an error naming the known ones."""
    known = list(dict.fromkeys(n for ns in names.values() for n in ns))
    for name in given:
        if name not in known:
            raise UnknownNameError("tolerance metric", name, known)
    return {col: next((float(given[n]) for n in ns if n in given), 0.0) for col, ns in names.items()}


def compare_rows(base: pd.DataFrame, groups: Rows, key: Sequence[str], tolerances: Mapping[str, float],
                 label: Callable[[Any], str], ndigits: int) -> Any:
    """The check of a baseline leaderboard against measured rows (``groups``, as the kind's
    ``leaderboard_rows`` gives them): per baseline row and compared column (``tolerances``: column
    -> absolute tolerance), the delta rounded to ``ndigits``; rows missing on either side. A value
    empty on both sides is not compared; empty on one side fails."""
    got = {}
    for header, rows in groups.values():
        got.update({tuple(r[header.index(c)] for c in key): dict(zip(header, r)) for r in rows})
    diff, missing, seen = [], [], set()
    for _, b in base.iterrows():
        k = tuple(b[c] for c in key)
        m = got.get(k)
        if m is None:
            missing.append(dict(zip(key, k)))
            continue
        seen.add(k)
        for col, tol in tolerances.items():
            if b[col] is None and not m[col]:
                continue
            bv = math.nan if b[col] is None else float(b[col])
            mv = float(m[col]) if m[col] else math.nan
            delta = round(mv - bv, ndigits)
            diff.append([label(b), col, bv, mv, delta, tol, not math.isnan(delta) and abs(delta) <= tol + EPS])
    extra = [dict(zip(key, k)) for k in got if k not in seen]
    return CheckResult(baseline=str(base.attrs.get("path", "baseline")),
                       diff=pd.DataFrame(diff, columns=DIFF_COLUMNS).astype({"ok": bool}),
                       missing=pd.DataFrame(missing, columns=list(key)),
                       extra=pd.DataFrame(extra, columns=list(key)))

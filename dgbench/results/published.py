"""Reading published leaderboards: ``<dataset>-<protocol>.csv`` validated against its kind's
schema (:func:`load_leaderboard`), as summary rows for tables and pages, and the paper's numbers
shipped under ``leaderboards/paper/``. Writing them is :mod:`.leaderboard`'s job.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from .csvio import LeaderboardError, check_unique, csv_rows, header_error, row_record
from .frame import MEASURED, severity_of
from .kinds import all_kinds, get_kind

# Columns that identify a row: no two rows of one file may share them.
KEY_COLUMNS = ("dataset", "protocol", "model", "model_kwargs", "shift", "train_domain",
               "test_domain", "fraction", "source")


def schema(kind: str, task: str) -> list[str]:
    """The exact header of a leaderboard of protocol kind ``kind`` and task ``task``."""
    return get_kind(kind).schema(task)


def schemas() -> dict[tuple[str, str], list[str]]:
    """Every leaderboard header of every registered result kind, by (kind, task)."""
    return {k: cols for kind in all_kinds() for k, cols in kind.schemas().items()}


def _schema_of(header: list[str]) -> tuple[str, str] | None:
    for k, cols in schemas().items():
        if header == cols:
            return k
    return None


def load_leaderboard(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a leaderboard CSV; the frame's ``attrs`` hold kind, task and path.

    Checks: the header is one of the documented schemas; keys are present; ``task`` matches the
    schema; ``model_kwargs`` is empty or a JSON object; ``n_runs`` is a positive integer (may be
    empty for numbers that dgbench did not measure); metrics and their standard errors (``_se_pct``,
    empty for one run) are finite percentages in [0, 100];
    drops are finite points in [-100, 100], present exactly on rows with a ``reference``; no two
    rows share a key. Any failure raises :class:`LeaderboardError` naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise DgbenchError(f"no leaderboard at {p}")
    try:
        return _read_leaderboard(p)
    except UnicodeDecodeError as exc:
        raise LeaderboardError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise LeaderboardError(f"{p}: not a readable CSV file ({exc})") from None


def _kind_of_rows(header: list[str], rows: list[tuple[int, list[str]]], first: str, task: str) -> str:
    """The kind of a leaderboard whose header several kinds share (natural shifts publish the
    appearance schema): the first other kind whose ``infer`` recognizes one of its rows, else ``first``."""
    sharing = [k for (k, t), cols in schemas().items() if cols == header and t == task and k != first]
    for k in sharing:
        infer = get_kind(k).infer
        if infer is not None and any(infer(dict(zip(header, row))) for _, row in rows):
            return k
    return first


def _read_leaderboard(p: Path) -> pd.DataFrame:
    # utf-8-sig: a spreadsheet that saved the file with a byte-order mark still reads.
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise LeaderboardError(f"{p}: empty file, expected a header line") from None
        kind_task = _schema_of(header)
        if kind_task is None:
            raise header_error(p, header, {f"{k} {t}": cols for (k, t), cols in schemas().items()})
        kind, task = kind_task
        if get_kind(kind).hooks is not None:  # a schema of its own shape, read by its kind
            return get_kind(kind).hooks.read(p, reader)
        rows = list(csv_rows(reader))
        kind = _kind_of_rows(header, rows, kind, task)
        metrics = get_kind(kind).published[task]
        records = [_parse_row(p, line, header, row, kind, task, metrics) for line, row in rows]
    check_unique(p, records, KEY_COLUMNS)
    frame = pd.DataFrame(records, columns=header + ["line"])
    frame.attrs.update(kind=kind, task=task, metrics=metrics, path=str(p))
    return frame


def _parse_row(p: Path, line: int, header: list[str], row: list[str], kind: str, task: str,
               metrics: tuple[str, ...]) -> dict[str, Any]:
    rec, bad = row_record(p, line, header, row,
                          ("dataset", "protocol", "task", "model", *get_kind(kind).conditions, "source"))
    if rec["task"] != task:
        raise bad("task", f"{rec['task']!r} in a {task} leaderboard")
    if "fraction" in rec:
        try:
            fraction = float(rec["fraction"])
        except ValueError:
            fraction = math.nan
        if not 0.0 <= fraction <= 1.0:
            raise bad("fraction", f"{rec['fraction']!r} is not a fraction in [0, 1] (0: source only)")
        rec["fraction"] = f"{fraction:g}"
    if rec["model_kwargs"]:
        try:
            if not isinstance(json.loads(rec["model_kwargs"]), dict):
                raise ValueError
        except ValueError:
            raise bad("model_kwargs", f"{rec['model_kwargs']!r} is not a JSON object") from None
    if rec["n_runs"]:
        if not rec["n_runs"].isdigit() or int(rec["n_runs"]) < 1:
            raise bad("n_runs", f"{rec['n_runs']!r} is not a positive integer")
        rec["n_runs"] = int(rec["n_runs"])
    elif rec["source"] == MEASURED:
        raise bad("n_runs", "empty; measured rows say how many runs they average")
    else:
        rec["n_runs"] = None
    for m in metrics:
        rec[f"{m}_pct"] = _percent(rec[f"{m}_pct"], 0.0, 100.0, bad, f"{m}_pct", "a percentage")
        drop_col = f"{m}_drop_pct"
        if rec["reference"] and not rec[drop_col] and rec[f"{m}_pct"] is not None:
            raise bad(drop_col, f"empty, but the row has a reference ({rec['reference']!r})")
        if not rec["reference"] and rec[drop_col]:
            raise bad(drop_col, "a drop on a row without a reference")
        rec[drop_col] = _percent(rec[drop_col], -100.0, 100.0, bad, drop_col, "percentage points")
        rec[f"{m}_se_pct"] = _percent(rec[f"{m}_se_pct"], 0.0, 100.0, bad, f"{m}_se_pct", "a percentage")
    return rec


def _percent(text: str, lo: float, hi: float, bad, col: str, unit: str) -> float | None:
    if not text:
        return None
    try:
        x = float(text)
    except ValueError:
        raise bad(col, f"{text!r} is not a number") from None
    if not (math.isfinite(x) and lo <= x <= hi):
        raise bad(col, f"{text} is not {unit} in [{lo:g}, {hi:g}] (units: percent, not fractions)")
    return x


def leaderboard_to_summary(lb: pd.DataFrame) -> pd.DataFrame:
    """A validated leaderboard -> summary-frame rows (means only, standard errors unknown)."""
    kind, metrics = lb.attrs["kind"], lb.attrs["metrics"]
    rows = []
    for i, r in lb.reset_index(drop=True).iterrows():
        row: dict[str, Any] = {c: r.get(c, "") or "" for c in KEY_COLUMNS}
        for c in ("shift", "train_domain", "test_domain", "fraction"):
            row[c] = r[c] if c in lb.columns else ""
        row.update(kind=kind, task=r["task"], reference=r["reference"], note=r["note"],
                   n=r["n_runs"] if r["n_runs"] is not None else float("nan"), order=i)
        row["family"], row["severity"] = severity_of(row["shift"], None)
        for m in metrics:
            row[m] = _nan(r[f"{m}_pct"])
            row[f"{m}_drop"] = _nan(r[f"{m}_drop_pct"])
            row[f"{m}_se"] = _nan(r[f"{m}_se_pct"])
            row[f"{m}_drop_se"] = float("nan")  # not published: drops are compared as means
        rows.append(row)
    return pd.DataFrame(rows)


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def paper_files() -> list[Path]:
    """The paper's transcribed numbers shipped under ``leaderboards/paper/``."""
    from ..config import data_dir

    folder = data_dir("leaderboards") / "paper"
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def load_paper() -> pd.DataFrame:
    """Every paper row as one summary frame (source = ``paper``)."""
    frames = [leaderboard_to_summary(load_leaderboard(p)) for p in paper_files()]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

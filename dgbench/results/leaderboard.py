"""Published leaderboards: ``<dataset>-<protocol>.csv`` with a fixed schema, and its Markdown page.

The schema (documented for users in ``leaderboards/README.md``) depends only on the protocol's
kind and task; every column name carries its unit (``_pct``: percent, ``_drop_pct``: percentage
points of degradation from the reference, positive = worse). Rows are sorted by their key and
numbers printed with :data:`DECIMALS` decimals, so publishing the same results twice gives the
same bytes. :func:`load_leaderboard` validates a file (the published ones and the paper's numbers
under ``leaderboards/paper/`` alike) and names the file and line of anything wrong.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from .csvio import (LeaderboardError, check_unique, csv_rows, csv_text, header_error, output_dir,  # noqa: F401
                    row_record, write_if_changed)
from .frame import MEASURED, records_to_frame, severity_of, summarize
from .kinds import all_kinds, get_kind

DECIMALS = 2  # the paper prints two decimals; so do leaderboards (and the check compares at it)

# Columns that identify a row: no two rows of one file may share them.
KEY_COLUMNS = ("dataset", "protocol", "model", "model_kwargs", "shift", "train_domain",
               "test_domain", "fraction", "source")


def schema(kind: str, task: str) -> list[str]:
    """The exact header of a leaderboard of protocol kind ``kind`` and task ``task``."""
    return get_kind(kind).schema(task)


def schemas() -> dict[tuple[str, str], list[str]]:
    """Every leaderboard header of every registered result kind, by (kind, task)."""
    return {k: cols for kind in all_kinds() for k, cols in kind.schemas().items()}


def leaderboard_name(dataset: str, protocol: str) -> str:
    """File stem of a leaderboard: ``digits-appearance``."""
    return f"{dataset}-{protocol}"


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    s = f"{float(x):.{DECIMALS}f}"
    return "0." + "0" * DECIMALS if s == "-0." + "0" * DECIMALS else s  # no "-0.00"


def _task(group: pd.DataFrame) -> str:
    task = next((t for t in group["task"] if t), "")
    if task:
        return task
    return "segmentation" if "miou" in group.columns and group["miou"].notna().any() else "classification"


def leaderboard_rows(summary: pd.DataFrame) -> dict[tuple[str, str], tuple[list[str], list[list[str]]]]:
    """Summary frame -> {(dataset, protocol): (header, sorted rows of strings)}."""
    out: dict[tuple[str, str], tuple[list[str], list[list[str]]]] = {}
    if not summary.empty and ((summary["dataset"] == "") | (summary["protocol"] == "")).any():
        raise DgbenchError("results without a dataset or protocol name cannot be published "
                           "(every leaderboard is <dataset>-<protocol>.csv)")
    for (dataset, protocol), g in summary.groupby(["dataset", "protocol"], sort=True):
        kind = get_kind(g["kind"].iloc[0])
        task = _task(g)
        if task not in kind.published or kind.hooks is not None:
            raise DgbenchError(f"no leaderboard schema for {kind.name} {task} results ({dataset}, {protocol})")
        header = kind.schema(task)
        rows = []
        for _, r in g.iterrows():
            vals: dict[str, str] = {c: str(r.get(c, "") or "") for c in header}
            vals["task"] = task
            vals["n_runs"] = str(int(r["n"])) if r["source"] == MEASURED else ""
            selection = str(r.get("selection", "") or "")  # NaN-free: summarize writes ""
            vals["note"] = "; ".join(x for x in (str(r.get("note", "") or ""),
                                                 selection and f"{selection} images only") if x)
            for m in kind.published[task]:
                vals[f"{m}_pct"] = _fmt(r.get(m))
                vals[f"{m}_drop_pct"] = _fmt(r.get(f"{m}_drop"))
                vals[f"{m}_se_pct"] = _fmt(r.get(f"{m}_se"))  # empty for a single run
            rows.append([vals[c] for c in header])
        key_idx = [header.index(c) for c in KEY_COLUMNS if c in header]
        rows.sort(key=lambda row: [row[i] for i in key_idx])
        out[(dataset, protocol)] = (header, rows)
    return out


def _as_summary(results: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Records (dicts), a records frame or a summary frame -> the summary frame."""
    if isinstance(results, pd.DataFrame):
        return results if "n" in results.columns and "source" in results.columns else summarize(results)
    return summarize(records_to_frame(results))


def publish(results: pd.DataFrame | Iterable[Mapping[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<dataset>-<protocol>.csv`` and ``.md`` per (dataset, protocol) of measured results.

    Only numbers dgbench measured are published (``source`` = ``dgbench``). Returns the paths
    written. Running it twice on the same results writes the same bytes.
    """
    from .tables import markdown_page  # the page renders the paper-shaped tables

    out = output_dir(out_dir)
    written: list[Path] = []
    for kind in all_kinds():  # kinds of other shapes (divergence) publish their own schema
        if kind.hooks is not None:
            results, mine = kind.hooks.split(results)
            written += kind.hooks.publish(mine, out) if not mine.empty else []
    summary = _as_summary(results)
    summary = summary[summary["source"] == MEASURED]
    if summary.empty and written:
        return written
    if summary.empty:
        raise DgbenchError("no measured results to publish")
    for (dataset, protocol), (header, rows) in leaderboard_rows(summary).items():
        stem = leaderboard_name(dataset, protocol)
        csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
        text = csv_text(header, rows)
        write_if_changed(csv_path, text)
        # The page is rendered from the CSV just written, so page and CSV can never disagree.
        write_if_changed(md_path, markdown_page(load_leaderboard(csv_path), csv_path.name))
        written += [csv_path, md_path]
    return written


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
        metrics = get_kind(kind).published[task]
        records = [_parse_row(p, line, header, row, kind, task, metrics) for line, row in csv_rows(reader)]
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


publish_leaderboard = publish  # the name under which ``dgbench`` exports it

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
from .csvio import (DECIMALS, LeaderboardError, check_unique, csv_rows, csv_text, fmt_number,  # noqa: F401
                    leaderboard_name, output_dir, row_record, write_if_changed)
from .frame import MEASURED, records_to_frame, summarize
from .kinds import all_kinds, get_kind
# Reading lives in results.published; its names stay importable from here.
from .published import (KEY_COLUMNS, leaderboard_to_summary, load_leaderboard, load_paper,  # noqa: F401
                        paper_files, schema, schemas)

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
                vals[f"{m}_pct"] = fmt_number(r.get(m))
                vals[f"{m}_drop_pct"] = fmt_number(r.get(f"{m}_drop"))
                vals[f"{m}_se_pct"] = fmt_number(r.get(f"{m}_se"))  # empty for a single run
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
    written. Running it twice on the same results writes the same bytes. A page shows 95 %
    intervals where ``<stem>.outcomes.json`` lies beside its CSV (``leaderboard publish`` writes
    that first: :func:`.leaderboard_outcomes.publish_outcomes`).
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


publish_leaderboard = publish  # the name under which ``dgbench`` exports it

"""Provenance of published leaderboard rows: which runs produced each number, and under what.

A leaderboard CSV carries numbers only. Its sidecar ``<dataset>-<protocol>.provenance.json``
(written beside it by ``dgbench leaderboard publish --html``) lists, per CSV row, the records
averaged into it: seed, weights sha256, dataset fingerprint, precision, dgbench version, git
commit and start time, copied from the records, plus the values the row published (``n_runs``
and each ``<metric>_pct``). The site shows the runs per row only while those values still equal
the CSV's, so a CSV re-published without ``--html`` never shows another run's provenance; a CSV
without a sidecar, or a row it does not cover, shows "not recorded".

The records behind a row are chosen exactly as :func:`frame.summarize` chooses them (same
dataset label, same latest-configuration rule), so the provenance describes the runs the
published mean averages and nothing else.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from .frame import MEASURED, SUMMARY_KEY, latest_config, table_datasets

SIDECAR_SUFFIX = ".provenance.json"
SIDECAR_SCHEMA = 1
# What identifies a row inside one leaderboard (dataset and protocol name the file).
ROW_KEY = ("model", "model_kwargs", "shift", "train_domain", "test_domain")
# Per run, in display order: (field in the sidecar, what the site calls it).
RUN_FIELDS = (
    ("weights_sha256", "weights sha256"),
    ("dataset_fingerprint", "dataset fingerprint"),
    ("precision", "precision"),
    ("dgbench", "dgbench version"),
    ("git_commit", "git commit"),
    ("started_at", "date"),
)


class ProvenanceError(DgbenchError):
    """A provenance sidecar is unreadable or not in the documented shape."""


def sidecar_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + SIDECAR_SUFFIX)


def text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _run(rec: Mapping[str, Any]) -> dict[str, Any]:
    versions = rec.get("versions") if isinstance(rec.get("versions"), Mapping) else {}
    run = {"seed": rec.get("seed"), "dgbench": versions.get("dgbench")}
    for name, _ in RUN_FIELDS:
        if name != "dgbench":
            run[name] = rec.get(name)
    return {k: (None if v is None else v if isinstance(v, int) else str(v)) for k, v in run.items()}


def provenance_by_leaderboard(frame: pd.DataFrame,
                              records: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """{(dataset, protocol): sidecar rows} for the measured rows of a records frame.

    ``frame`` is the records frame being published; ``records`` maps a record key to the stored
    record (the frame keeps only scalar fields, the sidecar needs ``versions`` too).
    """
    if frame.empty:
        return {}
    f = frame.copy()
    for c in ("dataset", "protocol", "model", "model_kwargs", "shift", "train_domain", "test_domain"):
        f[c] = [text(v) for v in f[c]]
    f["source"] = [text(v) or MEASURED for v in f["source"]] if "source" in f.columns else MEASURED
    f["dataset"] = table_datasets(f)[0]  # the name the leaderboard is published under
    out: dict[tuple[str, str], list[dict]] = {}
    with warnings.catch_warnings():  # publishing already warned about superseded runs
        warnings.simplefilter("ignore")
        for key, g in f.groupby(list(SUMMARY_KEY), sort=True, dropna=False):
            row = dict(zip(SUMMARY_KEY, key))
            if row["source"] != MEASURED:
                continue
            runs = [_run(records[k]) for k in latest_config(key, g)["key"] if k in records]
            runs.sort(key=lambda r: (r["started_at"] or "", str(r["seed"])))
            out.setdefault((row["dataset"], row["protocol"]), []).append(
                {"row": {c: row[c] for c in ROW_KEY}, "runs": runs})
    return out


def published_values(r: Mapping[str, Any], metrics: tuple[str, ...]) -> dict[str, str]:
    """What a row publishes, as the CSV prints it: a sidecar entry holds only for these values."""
    from .csvio import fmt_number

    n = r.get("n_runs", r.get("n"))
    n = "" if n is None or (isinstance(n, float) and math.isnan(n)) else str(int(n))
    return {"n_runs": n, **{f"{m}_pct": fmt_number(r.get(f"{m}_pct", r.get(m))) for m in metrics}}


def attach_values(rows: list[dict], lb: pd.DataFrame) -> list[dict]:
    """Give each sidecar row the values its CSV row publishes (rows the CSV lacks are dropped)."""
    metrics = tuple(lb.attrs["metrics"])
    by_key = {tuple(str(r.get(c, "") or "") for c in ROW_KEY): published_values(r, metrics)
              for _, r in lb.iterrows() if r["source"] == MEASURED}
    out = []
    for row in rows:
        key = tuple(row["row"][c] for c in ROW_KEY)
        if key in by_key:
            out.append({**row, "values": by_key[key]})
    return out


def sidecar_text(rows: list[dict]) -> str:
    """Byte-stable JSON of a sidecar: sorted keys, rows sorted by their key, one trailing newline."""
    rows = sorted(rows, key=lambda r: [r["row"][c] for c in ROW_KEY])
    return json.dumps({"schema": SIDECAR_SCHEMA, "rows": rows}, sort_keys=True, indent=1,
                      ensure_ascii=False) + "\n"


def read_sidecar(csv_path: Path) -> dict[tuple[str, ...], dict] | None:
    """The sidecar beside a leaderboard CSV as {row key: {"values", "runs"}}; None when absent."""
    path = sidecar_path(csv_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SIDECAR_SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SIDECAR_SCHEMA}")
        return {tuple(str(r["row"][c]) for c in ROW_KEY): {"values": dict(r["values"]), "runs": list(r["runs"])}
                for r in data["rows"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProvenanceError(f"{path}: not a dgbench provenance sidecar ({exc}); delete it or "
                              "re-publish with `dgbench leaderboard publish --html`") from None

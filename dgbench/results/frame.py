"""Records as pandas frames: one row per record, then one row per condition (seeds aggregated).

Two shapes, both plain DataFrames:

* the **records frame** (:func:`records_to_frame`, :func:`load_results`): one row per stored
  record, scalar metrics flattened into ``metrics.<name>`` columns and the record's raw drops into
  ``drop.<name>`` columns (raw = metric minus its reference's metric, as the record stores it);
* the **summary frame** (:func:`summarize`): one row per (dataset, protocol, model, variant
  kwargs, shift or train/test domain, source), the repeats of that condition (usually seeds)
  aggregated into mean, standard error and count. Drops here are *degradations*: how many points
  worse the condition is than its reference, so error up or accuracy/mIoU down reads positive, as
  the paper's Table 1 prints them. Tables, leaderboards, the check and the plot all read this one.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .catalogue import degradation_sign
from .kinds import all_kinds, get_kind, infer_kind
from .record import IDENTITY_FIELDS, canonical_json, fingerprint


# The columns every records frame has, whatever the records carry (order kept in the frame).
RECORD_COLUMNS = (
    "key", "kind", "task", "protocol", "dataset", "model", "model_kwargs", "shift", "shift_spec",
    "train_domain", "test_domain", "reference", "seed", "num_samples", "precision", "device",
    "started_at", "duration_s", "images_per_s", "git_commit", "order", "config", "config_items", "fraction",
    "limit", "subset",  # a sample selection (--limit/--subset): tables mark such rows
    "pair", "pair_spec", "layer", "layer_index", "has_in",  # divergence records (results.divergence)
    "decisions",  # shape-bias records' integer decision counts (results.shape_bias)
    "dg_run",  # leave-one-out records: algorithm, trial, hparams, held-out domains, evaluations
)
# What makes two records repeats of one configuration: every identity field but the seed.
CONFIG_FIELDS = tuple(f for f in IDENTITY_FIELDS if f != "seed")


class SupersededResultsWarning(UserWarning):
    """Older records of a condition measured under another configuration were left out."""

# What identifies one row of the summary frame (and of a leaderboard).
SUMMARY_KEY = (
    "dataset", "protocol", "model", "model_kwargs", "shift", "train_domain", "test_domain", "fraction", "source",
)

MEASURED = "dgbench"  # the `source` of numbers dgbench measured (the paper's are "paper")


def fraction_label(value: Any) -> str:
    """A fine-tune record's fraction as text (``0.1``, ``1``; ``0``: source only); ``""`` for other kinds."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):g}"


def selection_label(subset: Any, limit: Any) -> str:
    """What part of the evaluation set a record measured: ``""`` for all of it, else ``subset of
    200`` (``--subset``: a fixed class-balanced choice), ``first 100`` (``--limit``) or both."""
    subset, limit = (x if x and not math.isnan(x) else None for x in (_number(subset), _number(limit)))
    if subset and limit:
        return f"first {limit:g} of a subset of {subset:g}"
    return f"subset of {subset:g}" if subset else f"first {limit:g}" if limit else ""


def row_label(model: str, kwargs: str, selection: Any = "") -> str:
    """A table row's model: its variant label, and ``[subset of 200]`` when the row measured only
    part of the evaluation set (such numbers are not comparable with full-set rows)."""
    selection = as_text(selection)
    return variant_label(model, kwargs) + (f" [{selection}]" if selection else "")


def kwargs_label(kwargs: Any) -> str:
    """Variant kwargs as a stable string: ``""`` for none, else canonical JSON."""
    if not kwargs:
        return ""
    if isinstance(kwargs, str):
        return kwargs
    return canonical_json(kwargs)


def variant_label(model: str, kwargs: str) -> str:
    """How a model is named in a table: ``resnet50_ibn_a`` or ``resnet50_ibn_a (ratio=0.25)``."""
    if not kwargs:
        return model
    try:
        items = json.loads(kwargs).items()
    except (ValueError, AttributeError):
        return f"{model} {kwargs}"
    return f"{model} (" + ", ".join(f"{k}={canonical_json(v)}" for k, v in items) + ")"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def records_to_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record; a record stored twice under one key (``--force``) keeps its latest."""
    latest: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records):
        row: dict[str, Any] = {c: rec.get(c) for c in RECORD_COLUMNS}
        row["key"] = rec.get("key") or f"row{i}"
        row["kind"] = infer_kind(rec)  # records older than the kind field: inferred here, once
        row["fraction"] = fraction_label(rec.get("fraction"))
        row["model_kwargs"] = kwargs_label(rec.get("model_kwargs"))
        row["order"] = i  # store order: tables list shifts as the protocol ran them
        row["config_items"] = {f: rec.get(f) for f in CONFIG_FIELDS}
        row["config"] = fingerprint(row["config_items"])
        for field in ("metrics", "drop"):
            for name, value in (rec.get(field) or {}).items():
                num = _number(value)
                if num is not None:  # per-class IoU dicts and the like stay in the record only
                    row[f"{field}.{name}"] = num
        latest.pop(row["key"], None)  # re-insert, so the latest copy also takes the latest place
        latest[row["key"]] = row
    frame = pd.DataFrame(list(latest.values()), columns=None)
    for c in RECORD_COLUMNS:
        if c not in frame.columns:
            frame[c] = pd.Series(dtype=object)
    extra = sorted(c for c in frame.columns if c not in RECORD_COLUMNS)
    return frame[list(RECORD_COLUMNS) + extra].reset_index(drop=True)


def load_results(root: str | os.PathLike, protocol: str | None = None) -> pd.DataFrame:
    """The records of the results directory ``root`` (one protocol's, or all) as a records frame."""
    from .store import ResultStore

    return records_to_frame(ResultStore(root).iter_records(protocol))


def table_datasets(frame: pd.DataFrame) -> tuple[list[str], dict[str, set[str]]]:
    """The dataset each record is tabulated and published under, and what each such name covers.

    Appearance records keep their own ``dataset``. A cross-domain 2x2 spans two datasets (each
    record names the one it was tested on), so its records are grouped by their domain pair: the
    connected domains of one protocol, named by the records' common ``dataset`` when they share
    one (``cityscapes-gta5``), else by the domains joined with ``-`` (``digits-typeset-digits``).
    The second value maps each name to the datasets and domains it covers (for ``--dataset``).
    """
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    rows = list(zip(frame["kind"], _texts(frame["protocol"]), _texts(frame["dataset"]),
                    _texts(frame["train_domain"]), _texts(frame["test_domain"])))
    square = {k.name for k in all_kinds() if k.square}  # train x test domains: a pair spans datasets
    for kind, proto, _, train, test in rows:
        if kind in square:
            parent[find((proto, train))] = find((proto, test))
    members: dict[tuple[str, str], dict[str, set[str]]] = {}
    for kind, proto, ds, train, test in rows:
        if kind in square:
            m = members.setdefault(find((proto, train)), {"datasets": set(), "domains": set()})
            m["datasets"].add(ds)
            m["domains"] |= {train, test}
    labels, covers = [], {}
    for kind, proto, ds, train, _ in rows:
        if kind not in square:
            labels.append(ds)
            covers.setdefault(ds, set()).add(ds)
            continue
        m = members[find((proto, train))]
        label = next(iter(m["datasets"])) if len(m["datasets"]) == 1 else "-".join(sorted(m["domains"]))
        labels.append(label)
        covers.setdefault(label, set()).update(m["datasets"] | m["domains"] | {label})
    return labels, covers


def _texts(values: Iterable[Any]) -> list[str]:
    return [as_text(v) for v in values]


def metric_names(frame: pd.DataFrame) -> list[str]:
    """The scalar metrics present in a records frame, in a stable order."""
    return sorted(c.split(".", 1)[1] for c in frame.columns if c.startswith("metrics."))


def stat(values: pd.Series) -> tuple[float, float, int]:
    """Mean, standard error of the mean (NaN for one value) and count of the non-NaN values."""
    v = values.dropna().to_numpy(dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    se = float(np.std(v, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(np.mean(v)), se, n


def as_text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a records frame into one row per condition (see the module docstring).

    Columns: the :data:`SUMMARY_KEY` columns, ``kind``, ``task``, ``reference``, ``n`` (records
    aggregated), ``order``, ``family``/``severity`` (severity sweeps), and per metric ``m``:
    ``m``, ``m_se``, ``m_drop``, ``m_drop_se`` (drop = degradation, NaN on reference rows).
    A record whose drop is missing gets it from the mean of its reference row.
    """
    metrics = metric_names(frame)
    cols = list(SUMMARY_KEY) + ["kind", "task", "reference", "n", "order", "family", "severity", "selection"]
    cols += ["num_samples"]  # images behind the (latest) measurement: intervals need it
    cols += [f"{m}{s}" for m in metrics for s in ("", "_se", "_drop", "_drop_se")]
    if "kind" in frame.columns:  # kinds of other shapes (divergence: a row per layer) summarize their own
        frame = frame[~frame["kind"].isin([k.name for k in all_kinds() if k.hooks is not None])]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    f = frame.copy()
    for c in ("dataset", "protocol", "model", "model_kwargs", "shift", "train_domain",
              "test_domain", "reference", "task", "fraction"):
        f[c] = [as_text(v) for v in f[c]]
    if "source" not in f.columns:
        f["source"] = MEASURED
    f["source"] = [as_text(v) or MEASURED for v in f["source"]]
    f["dataset"] = table_datasets(f)[0]  # a cross-domain 2x2 is one table, not one per test set
    group_key = list(SUMMARY_KEY)
    means: dict[tuple, dict[str, float]] = {}
    groups = [(key, latest_config(key, g)) for key, g in f.groupby(group_key, sort=False, dropna=False)]
    for key, g in groups:
        means[key] = {m: stat(g[f"metrics.{m}"])[0] for m in metrics}
    rows = []
    for key, g in groups:
        first = g.iloc[0]
        row = dict(zip(group_key, key))
        row.update(kind=first["kind"], task=first["task"], reference=first["reference"],
                   n=len(g), order=int(g["order"].min()))
        row["family"], row["severity"] = severity_of(row["shift"], first.get("shift_spec"))
        row["selection"] = selection_label(first.get("subset"), first.get("limit"))
        ns = first.get("num_samples")
        row["num_samples"] = float(ns) if ns is not None and pd.notna(ns) else math.nan
        ref_key = _reference_key(row) if row["reference"] else None
        for m in metrics:
            row[m], row[f"{m}_se"], _ = stat(g[f"metrics.{m}"])
            if ref_key is None:
                row[f"{m}_drop"] = row[f"{m}_drop_se"] = math.nan
                continue
            raw = g[f"drop.{m}"] if f"drop.{m}" in g.columns else pd.Series(np.nan, index=g.index)
            ref_mean = means.get(ref_key, {}).get(m, math.nan)
            raw = raw.where(raw.notna(), g[f"metrics.{m}"] - ref_mean)
            row[f"{m}_drop"], row[f"{m}_drop_se"], _ = stat(degradation_sign(m) * raw)
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def latest_config(key: tuple, g: pd.DataFrame) -> pd.DataFrame:
    """The records of ``g`` measured under its latest configuration (seeds may differ).

    A condition measured twice under different settings (a quick ``--limit`` run, then a full
    one; fp32, then bf16) must not be averaged as if the runs were seeds: the latest wins, and
    a warning says what was left out and which fields differ.
    """
    if "config" not in g.columns or g["config"].nunique(dropna=False) <= 1:
        return g
    latest = g.loc[g["order"].idxmax()]
    keep = g[g["config"] == latest["config"]]
    old = g[g["config"] != latest["config"]]
    fields = sorted({k for items in old["config_items"] for k in CONFIG_FIELDS
                     if canonical_json(items.get(k)) != canonical_json(latest["config_items"].get(k))})
    what = " · ".join(str(k) for k in key if k)
    warnings.warn(f"{what}: {len(old)} older result(s) measured with other {', '.join(fields)} left out; "
                  "showing the latest configuration", SupersededResultsWarning, stacklevel=3)
    return keep


def _reference_key(row: Mapping[str, Any]) -> tuple:
    """The summary key of a row's reference: the origin shift, or the in-domain test domain."""
    ref = dict(row)
    ref[get_kind(row["kind"]).column] = row["reference"]  # the origin shift, or the in-domain test domain
    return tuple(ref[c] for c in SUMMARY_KEY)


_SEVERITY_NAME = re.compile(r"^(?P<family>.*?[^0-9.])(?P<severity>[0-9]+(?:\.[0-9]+)?)$")


def severity_of(shift: str, spec: Any) -> tuple[str, float]:
    """(family, severity) of a shift, for robustness curves; ("", NaN) when it has none.

    The shift spec's ``family`` and ``severity`` fields win; otherwise the name is read as a
    family prefix and a number (``rgb+30`` -> ("rgb+", 30), ``std-x1.25`` -> ("std-x", 1.25)).
    """
    if isinstance(spec, Mapping):
        fam, sev = spec.get("family"), _number(spec.get("severity"))
        if fam and sev is not None:
            return str(fam), sev
    m = _SEVERITY_NAME.match(shift or "")
    if m:
        return m["family"], float(m["severity"])
    return "", math.nan

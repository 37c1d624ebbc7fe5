"""Per-image correctness shipped beside a leaderboard: ``<stem>.outcomes.json`` next to ``<stem>.csv``.

A published leaderboard holds rounded numbers; to tell whether a rerun's change is noise or real,
``dgbench check`` needs the images behind them. This sidecar keeps, per single-run row (model,
kwargs, shift), the top-1 and top-5 correctness bitsets (one bit per image, base64 of numpy's
packbits, in the dataset order whose sample-id hash is ``order``) and the images evaluated when
not all were. JSON with sorted rows and no timestamps: publishing twice writes the same bytes,
and a 599-image leaderboard of 30 rows is about 9 KB.

:func:`flips` pairs a sidecar row with a fresh run's outcomes: the images one gets right and
the other misses, which :func:`dgbench.metrics.stats.mcnemar_exact` turns into a p-value.
"""
from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DgbenchError
from ..metrics.outcomes import SampleOutcomes
from . import outcomes
from .csvio import leaderboard_name, write_if_changed

FORMAT_VERSION = 1
SUFFIX = ".outcomes.json"
ROW_KEY = ("model", "model_kwargs", "shift")


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    p = Path(csv_path)
    return p.with_name(p.name.removesuffix(".csv") + SUFFIX)


def _b64(bits: np.ndarray) -> str:
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def _unb64(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=n).astype(bool)


def _row(key: tuple[str, ...], out: SampleOutcomes) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(ROW_KEY, key))
    row["evaluated"] = None if out.evaluated.all() else _b64(out.evaluated)
    row.update({f"top{k}": _b64(out.correct[k] & out.evaluated) for k in sorted(out.correct)})
    return row


def sidecar_text(rows: Mapping[tuple[str, ...], tuple[SampleOutcomes, str]], dataset: str, protocol: str) -> str:
    """The sidecar's JSON for ``{(model, kwargs, shift): (outcomes, order hash)}`` of one leaderboard."""
    orders = {order for _, order in rows.values()}
    sizes = {len(out) for out, _ in rows.values()}
    if len(orders) != 1 or len(sizes) != 1:
        raise DgbenchError(f"{dataset} · {protocol}: the records' per-image outcomes list different images "
                           "(another dataset order or size); rerun them with --force before publishing")
    doc = {"format": FORMAT_VERSION, "dataset": dataset, "protocol": protocol, "n": sizes.pop(),
           "order": orders.pop(), "rows": [_row(k, rows[k][0]) for k in sorted(rows)]}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def publish_outcomes(frame: pd.DataFrame, root: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``<dataset>-<protocol>.outcomes.json`` for every leaderboard whose single-run
    classification records kept per-image outcomes (the latest record of each row); remove the
    one of a leaderboard whose records kept none."""
    if frame.empty or "key" not in frame.columns:
        return []
    written = []
    cls = frame[(frame["task"] == "classification") & frame["shift"].notna()].sort_values("order")
    for (dataset, protocol), group in cls.groupby(["dataset", "protocol"], sort=True):
        latest = {tuple("" if r[c] is None else str(r[c]) for c in ROW_KEY): r["key"] for _, r in group.iterrows()}
        rows = {k: got for k, key in latest.items() if (got := outcomes.read(root, str(protocol), key)) is not None}
        path = Path(out_dir) / f"{leaderboard_name(str(dataset), str(protocol))}{SUFFIX}"
        if not rows:  # a sidecar of an earlier publish would stand beside numbers it is not of
            path.unlink(missing_ok=True)
            continue
        write_if_changed(path, sidecar_text(rows, str(dataset), str(protocol)))
        written.append(path)
    return written


@dataclass(frozen=True)
class Sidecar:
    n: int
    order: str
    rows: dict[tuple[str, ...], dict[str, Any]]

    def correct(self, key: tuple[str, ...], k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(evaluated, correct@k)`` of a row, or None when the sidecar lacks it."""
        row = self.rows.get(key)
        if row is None or f"top{k}" not in row:
            return None
        evaluated = np.ones(self.n, bool) if row["evaluated"] is None else _unb64(row["evaluated"], self.n)
        return evaluated, _unb64(row[f"top{k}"], self.n)

    def error(self, key: tuple[str, ...], k: int) -> float | None:
        """A row's top-``k`` error in percent, or None when the sidecar lacks it (or its images)."""
        got = self.correct(key, k)
        if got is None or not got[0].any():
            return None
        evaluated, correct = got
        return 100 * int((evaluated & ~correct).sum()) / int(evaluated.sum())


def printed_equal(a: Any, b: Any) -> bool:
    """Equal as a leaderboard CSV prints them (two decimals, ``-0.00`` written ``0.00``): whether a
    sidecar row still stands behind a published number."""
    def printed(x: float) -> str:
        return f"{x:.2f}".replace("-0.00", "0.00")

    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return False
    return not (math.isnan(a) or math.isnan(b)) and printed(a) == printed(b)


def load_sidecar(csv_path: str | os.PathLike) -> Sidecar | None:
    """The sidecar beside a leaderboard CSV, or None when there is none."""
    path = sidecar_path(csv_path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {doc.get('format')!r}, this dgbench reads {FORMAT_VERSION}")
        rows = {tuple(r[c] for c in ROW_KEY): r for r in doc["rows"]}
        return Sidecar(n=int(doc["n"]), order=str(doc["order"]), rows=rows)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DgbenchError(f"{path}: unreadable per-image outcomes ({exc}); publish it again with "
                           "`dgbench leaderboard publish`, or delete it to check by tolerance only") from None


def flips(side: Sidecar, key: tuple[str, ...], k: int, out: SampleOutcomes, order: str) -> tuple[int, int] | None:
    """``(baseline right -> now wrong, baseline wrong -> now right)`` over images both evaluated,
    or None when the two cannot be paired (a row missing, another image order or size)."""
    got = side.correct(key, k)
    if got is None or order != side.order or len(out) != side.n or k not in out.correct:
        return None
    evaluated, base = got
    both = evaluated & out.evaluated
    now = out.correct[k]
    return int(np.count_nonzero(both & base & ~now)), int(np.count_nonzero(both & ~base & now))


def flips_against(csv_path: str | os.PathLike, base: pd.DataFrame, measured: Any,
                  root: str | os.PathLike) -> Any:
    """A ``(baseline row, metric) -> flips`` function for :func:`.check.check_leaderboard`, pairing
    the leaderboard's sidecar with the measured records' outcomes; None without a sidecar."""
    from .frame import records_to_frame

    side = load_sidecar(csv_path)
    if side is None:
        return None
    frame = measured if isinstance(measured, pd.DataFrame) else records_to_frame(measured)
    if frame.empty:
        return None
    pairs = set(zip(base["dataset"], base["protocol"]))
    frame = frame[[(d, p) in pairs for d, p in zip(frame["dataset"], frame["protocol"])]].sort_values("order")
    latest = {tuple("" if r[c] is None else str(r[c]) for c in ROW_KEY): (str(r["protocol"]), r["key"])
              for _, r in frame.iterrows() if r.get("task") == "classification"}

    def flips_of(b: Mapping[str, Any], metric: str) -> tuple[int, int] | None:
        key = tuple(str(b[c] or "") for c in ROW_KEY)
        k = {"top1_err": 1, "top5_err": 5}.get(metric)
        if k is None or key not in latest or int(b.get("n_runs") or 1) != 1:
            return None
        if not printed_equal(side.error(key, k), b.get(f"{metric}_pct")):
            return None  # a sidecar left from another publish: its images are not this number's
        got = outcomes.read(root, *latest[key])  # decoded once per file (outcomes.read caches)
        return None if got is None else flips(side, key, k, *got)

    return flips_of

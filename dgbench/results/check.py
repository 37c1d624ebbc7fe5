"""The regression check: does a measurement still match a published leaderboard?

Every metric and every drop of every baseline row is compared with the measured value at the
leaderboard's precision (both are rounded to :data:`~.leaderboard.DECIMALS` decimals, so an
unchanged run differs by exactly 0). Tolerances are absolute, in the CSV's units (percent, or
points for drops), per metric; with none given a number may not move at all. A baseline row
with no measured counterpart fails the check (a model or shift silently vanished); measured rows
the baseline lacks are listed but pass (publish a new leaderboard to adopt them).

Where the measurement comes from is pluggable: :func:`check` reads matching records from the
results store, or calls a ``rerun`` callback (the protocol runner) that re-measures the
leaderboard's rows and returns their records. :func:`set_rerun` installs the default callback.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..errors import DgbenchError, UnknownNameError
from .frame import MEASURED, load_results, records_to_frame, summarize, variant_label
from .kinds import get_kind
from .leaderboard import DECIMALS, KEY_COLUMNS, leaderboard_rows, load_leaderboard

# A callback that re-runs the protocol behind a leaderboard: (validated baseline frame, results
# dir) -> the new records (dicts or a records frame).
RerunFn = Callable[[pd.DataFrame, Path], "pd.DataFrame | Iterable[Mapping[str, Any]]"]
_RERUN: RerunFn | None = None

DIFF_COLUMNS = ["key", "metric", "baseline", "measured", "delta", "tolerance", "ok"]
EPS = 1e-9  # float slack: 25.54 - 25.54 must be within a tolerance of 0


def set_rerun(fn: RerunFn | None) -> None:
    """Install the protocol runner that ``dgbench check --rerun`` uses (None to remove it)."""
    global _RERUN
    _RERUN = fn


def get_rerun() -> RerunFn | None:
    return _RERUN


@dataclass
class CheckResult:
    """The outcome of one check: a diff per (row, metric) plus rows missing or extra."""

    baseline: str  # the baseline's path (or a name)
    diff: pd.DataFrame  # DIFF_COLUMNS
    missing: pd.DataFrame  # baseline rows with no measured row (key columns)
    extra: pd.DataFrame  # measured rows the baseline does not list

    @property
    def ok(self) -> bool:
        return bool(self.diff["ok"].all()) and self.missing.empty

    @property
    def failures(self) -> pd.DataFrame:
        return self.diff[~self.diff["ok"]]


def one_tolerance(tolerances: Mapping[str, float], names: tuple[str, ...]) -> float:
    """The tolerance of a one-metric kind: the first of ``names`` (most specific first) given; an
    unknown name is an error naming the known ones."""
    for name in tolerances:
        if name not in names:
            raise UnknownNameError("tolerance metric", name, names)
    return next((float(tolerances[n]) for n in names if n in tolerances), 0.0)


def compare_keyed(base: pd.DataFrame, got: Mapping[tuple, Sequence[str]], key: Sequence[str], header: Sequence[str],
                  columns: Sequence[str], tol: float, decimals: int, label: Callable[[Any], str]) -> CheckResult:
    """Compare a kind-shaped leaderboard (``base``) with measured rows of the same ``header``
    keyed by ``key`` (``got``): a diff per (row, column), baseline rows not measured, extra rows."""
    diff, missing, seen = [], [], set()
    for _, b in base.iterrows():
        k = tuple(b[c] for c in key)
        m = got.get(k)
        if m is None:
            missing.append(dict(zip(key, k)))
            continue
        seen.add(k)
        for col in columns:
            bv, mv = float(b[col]), float(m[list(header).index(col)])
            delta = round(mv - bv, decimals + 2)
            diff.append([label(b), col, bv, mv, delta, tol, abs(delta) <= tol + EPS])
    extra = [dict(zip(key, k)) for k in got if k not in seen]
    return CheckResult(baseline=str(base.attrs.get("path", "baseline")),
                       diff=pd.DataFrame(diff, columns=DIFF_COLUMNS).astype({"ok": bool}),
                       missing=pd.DataFrame(missing, columns=list(key)),
                       extra=pd.DataFrame(extra, columns=list(key)))


def parse_tolerances(items: Iterable[str]) -> dict[str, float]:
    """``["top1_err=0.5", "all=0.1"]`` -> ``{"top1_err": 0.5, "all": 0.1}``."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            tol = float(value)
            if not sep or not name.strip() or not math.isfinite(tol) or tol < 0:
                raise ValueError
        except ValueError:
            raise DgbenchError(f"bad --tolerance {item!r}: expected METRIC=VALUE with a value >= 0 "
                               "in the CSV's units, e.g. top1_err=0.5 or all=0.2") from None
        out[name.strip()] = tol
    return out


def tolerance_for(column: str, tolerances: Mapping[str, float]) -> float:
    """Tolerance of a CSV column: its own name (with or without ``_pct``), else its metric's
    (a drop inherits its metric's), else ``all``, else 0."""
    bare = column.removesuffix("_pct")
    metric = bare.removesuffix("_drop")
    for name in (column, bare, metric, "all"):
        if name in tolerances:
            return tolerances[name]
    return 0.0


def _validate_tolerances(tolerances: Mapping[str, float], columns: list[str]) -> None:
    known = {"all"}
    for c in columns:
        bare = c.removesuffix("_pct")
        known |= {c, bare, bare.removesuffix("_drop")}
    for name in tolerances:
        if name not in known:
            raise UnknownNameError("tolerance metric", name, known)


def _row_key(r: Mapping[str, Any], kind: str) -> str:
    k = get_kind(kind)
    label = variant_label(r["model"], r["model_kwargs"])
    if k.square or not k.split_rows:  # rgb+50, or digits→typeset-digits
        return f"{label} · " + "→".join(str(r[c]) for c in k.conditions)
    return f"{label} · " + "→".join(str(r[c]) for c in k.split_rows) + f" @ {r[k.column]}"  # finetune


def measured_leaderboard(baseline: pd.DataFrame, measured: Any) -> pd.DataFrame:
    """Records (or a records frame) -> rows in the baseline's schema, for its dataset/protocol."""
    frame = measured if isinstance(measured, pd.DataFrame) else records_to_frame(measured)
    summary = summarize(frame)
    header = list(baseline.columns.drop("line"))
    if summary.empty:
        return pd.DataFrame(columns=header)
    pairs = set(zip(baseline["dataset"], baseline["protocol"]))
    summary = summary[[(d, p) in pairs for d, p in zip(summary["dataset"], summary["protocol"])]]
    summary = summary[summary["source"] == MEASURED]
    rows: list[list[str]] = []
    for (h, rs) in leaderboard_rows(summary).values() if not summary.empty else []:
        if h != header:
            raise DgbenchError(f"measured results do not fit the baseline's schema ({','.join(h)})")
        rows += rs
    return pd.DataFrame(rows, columns=header)


def check_leaderboard(baseline: str | os.PathLike | pd.DataFrame, measured: Any,
                      tolerances: Mapping[str, float] | None = None) -> CheckResult:
    """Compare a baseline leaderboard with measured records; see the module docstring."""
    base = baseline if isinstance(baseline, pd.DataFrame) else load_leaderboard(baseline)
    kind, metrics = base.attrs["kind"], base.attrs["metrics"]
    if get_kind(kind).hooks is not None:  # a kind of another shape (divergence) compares its own
        return get_kind(kind).hooks.check(base, measured, tolerances or {})
    columns = [f"{m}_pct" for m in metrics] + [f"{m}_drop_pct" for m in metrics]
    tolerances = dict(tolerances or {})
    _validate_tolerances(tolerances, columns)
    meas = measured_leaderboard(base, measured)
    keys = [c for c in KEY_COLUMNS if c in base.columns and c != "source"]
    index = {tuple(r[c] for c in keys): r for _, r in meas.iterrows()}
    diff_rows, missing, seen = [], [], set()
    for _, b in base.iterrows():
        k = tuple(b[c] for c in keys)
        m = index.get(k)
        if m is None:
            missing.append({c: b[c] for c in keys})
            continue
        seen.add(k)
        for col in columns:
            bv = None if _missing(b[col]) else float(b[col])
            mv = None if _missing(m[col]) else float(m[col])
            tol = tolerance_for(col, tolerances)
            if bv is None or mv is None:
                delta = math.nan
                ok = bv is None and mv is None
            else:
                delta = round(mv - bv, DECIMALS + 2)
                ok = abs(delta) <= tol + EPS
            diff_rows.append([_row_key(b, kind), col, _nan(bv), _nan(mv), delta, tol, ok])
    extra = [{c: r[c] for c in keys} for _, r in meas.iterrows() if tuple(r[c] for c in keys) not in seen]
    return CheckResult(
        baseline=str(base.attrs.get("path", "baseline")),
        diff=pd.DataFrame(diff_rows, columns=DIFF_COLUMNS).astype({"ok": bool}),
        missing=pd.DataFrame(missing, columns=keys),
        extra=pd.DataFrame(extra, columns=keys),
    )


def _missing(x: Any) -> bool:
    return x is None or x == "" or (isinstance(x, float) and math.isnan(x))


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def check(baseline_path: str | os.PathLike, results_dir: str | os.PathLike,
          tolerances: Mapping[str, float] | None = None, rerun: RerunFn | None = None) -> CheckResult:
    """Check a leaderboard against stored results, or against a fresh run when ``rerun`` is given."""
    base = load_leaderboard(baseline_path)
    if set(base["source"]) != {MEASURED}:
        raise DgbenchError(f"{baseline_path}: a baseline holds numbers dgbench measured "
                           f"(source = {MEASURED}); this one has {sorted(set(base['source']))}")
    if rerun is not None:
        measured = rerun(base, Path(results_dir))
    else:
        measured = load_results(results_dir)
    return check_leaderboard(base, measured, tolerances)


def render_check(result: CheckResult, show_all: bool = False) -> RenderableType:
    """A rich diff table of what moved and by how much (every row with ``show_all``)."""
    shown = result.diff if show_all else result.failures
    parts: list[RenderableType] = []
    n_bad, n = int((~result.diff["ok"]).sum()), len(result.diff)
    if not shown.empty:
        t = Table(title=f"check against {result.baseline}", title_justify="left")
        for c in ("row", "metric", "baseline", "measured", "delta", "tolerance", "ok"):
            t.add_column(c, justify="left" if c in ("row", "metric") else "right")
        for _, r in shown.iterrows():
            style = None if r["ok"] else "bold red"
            delta = "–" if math.isnan(r["delta"]) else f"{r['delta']:+.{DECIMALS}f}"
            t.add_row(r["key"], r["metric"], _num(r["baseline"]), _num(r["measured"]), delta,
                      f"{r['tolerance']:.{DECIMALS}f}", "ok" if r["ok"] else "FAIL", style=style)
        parts.append(t)
    for label, frame, style in (("missing (in the baseline, not measured)", result.missing, "bold red"),
                                ("extra (measured, not in the baseline)", result.extra, "yellow")):
        if not frame.empty:
            parts.append(Text(f"{label}: {len(frame)} row(s)", style=style))
            for _, r in frame.iterrows():
                parts.append(Text("  " + ", ".join(f"{c}={r[c]}" for c in frame.columns if r[c]), style=style))
    verdict = (Text(f"check passed: {n} value(s) within tolerance", style="bold green") if result.ok else
               Text(f"check FAILED: {n_bad} of {n} value(s) out of tolerance, "
                    f"{len(result.missing)} row(s) missing", style="bold red"))
    parts.append(verdict)
    return Group(*parts)


def _num(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.{DECIMALS}f}"

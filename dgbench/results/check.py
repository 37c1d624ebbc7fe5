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
from collections.abc import Callable, Iterable, Mapping
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
NOISE_COLUMNS = ["flips", "p_holm"]  # per error value: (right -> wrong, wrong -> right) images, Holm-adjusted p
ALPHA = 0.05  # a change whose Holm-adjusted McNemar p is below this fails the check
# (baseline row, error column) -> (images right before and wrong now, wrong before and right now), or None
FlipsFn = Callable[[Mapping[str, Any], str], "tuple[int, int] | None"]
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
                      tolerances: Mapping[str, float] | None = None, flips: FlipsFn | None = None,
                      alpha: float = ALPHA) -> CheckResult:
    """Compare a baseline leaderboard with measured records; see the module docstring.

    With ``flips`` (the images that changed between the baseline's run and this one, per error
    value), a value also fails when its change is significant: exact McNemar on the flips,
    Holm-adjusted over every value tested, below ``alpha``."""
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
            flipped = flips(b, col.removesuffix("_pct")) if flips is not None and "_drop" not in col else None
            diff_rows.append([_row_key(b, kind), col, _nan(bv), _nan(mv), delta, tol, ok, flipped, math.nan])
    extra = [{c: r[c] for c in keys} for _, r in meas.iterrows() if tuple(r[c] for c in keys) not in seen]
    return CheckResult(
        baseline=str(base.attrs.get("path", "baseline")),
        diff=_judge_flips(pd.DataFrame(diff_rows, columns=DIFF_COLUMNS + NOISE_COLUMNS).astype({"ok": bool}), alpha),
        missing=pd.DataFrame(missing, columns=keys),
        extra=pd.DataFrame(extra, columns=keys),
    )


def _judge_flips(diff: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Exact McNemar p of every value with flips, Holm-adjusted over them; a significant one fails."""
    from ..metrics import stats

    tested = [i for i, f in zip(diff.index, diff["flips"]) if f is not None]
    if not tested:
        return diff
    raw = [stats.mcnemar_exact(*diff.at[i, "flips"]) for i in tested]
    diff.loc[tested, "p_holm"] = stats.holm(raw)
    diff.loc[tested, "ok"] = diff.loc[tested, "ok"] & ~(diff.loc[tested, "p_holm"] < alpha)
    return diff


def _missing(x: Any) -> bool:
    return x is None or x == "" or (isinstance(x, float) and math.isnan(x))


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def check(baseline_path: str | os.PathLike, results_dir: str | os.PathLike,
          tolerances: Mapping[str, float] | None = None, rerun: RerunFn | None = None,
          significance: bool = True, alpha: float = ALPHA) -> CheckResult:
    """Check a leaderboard against stored results, or against a fresh run when ``rerun`` is given.

    With ``significance`` and per-image outcomes on both sides (the leaderboard's sidecar, the
    measured records'), each error value also reports its flipped images and fails when the
    change is significant (see :func:`check_leaderboard`)."""
    base = load_leaderboard(baseline_path)
    if set(base["source"]) != {MEASURED}:
        raise DgbenchError(f"{baseline_path}: a baseline holds numbers dgbench measured "
                           f"(source = {MEASURED}); this one has {sorted(set(base['source']))}")
    if rerun is not None:
        measured = rerun(base, Path(results_dir))
    else:
        measured = load_results(results_dir)
    flips = None
    if significance:
        from .leaderboard_outcomes import flips_against

        flips = flips_against(baseline_path, base, measured, results_dir)
    return check_leaderboard(base, measured, tolerances, flips=flips, alpha=alpha)


def render_check(result: CheckResult, show_all: bool = False) -> RenderableType:
    """A rich diff table of what moved and by how much (every row with ``show_all``); with
    per-image outcomes, the images that flipped and the Holm-adjusted McNemar p of each error."""
    shown = result.diff if show_all else result.failures
    parts: list[RenderableType] = []
    n_bad, n = int((~result.diff["ok"]).sum()), len(result.diff)
    tested = result.diff["flips"].notna() if "flips" in result.diff.columns else pd.Series(False, result.diff.index)
    if not shown.empty:
        # No rules, numbers unwrapped: with the flips and p columns it still fits 80 columns.
        t = Table(title=f"check against {result.baseline}", title_justify="left", box=None, padding=(0, 1),
                  pad_edge=False, header_style="bold")
        cols = ("row", "metric", "baseline", "measured", "delta", "tolerance") + (("flips", "p") if tested.any() else ())
        for c in cols + ("ok",):
            t.add_column(c, justify="left" if c in ("row", "metric") else "right", no_wrap=c != "row",
                         overflow="fold")
        for i, r in shown.iterrows():
            style = None if r["ok"] else "bold red"
            delta = "–" if math.isnan(r["delta"]) else f"{r['delta']:+.{DECIMALS}f}"
            noise = [_flips_cell(r["flips"]), _p_cell(r["p_holm"])] if tested.any() else []
            t.add_row(r["key"], r["metric"].removesuffix("_pct"), _num(r["baseline"]), _num(r["measured"]), delta,
                      f"{r['tolerance']:.{DECIMALS}f}", *noise, "ok" if r["ok"] else "FAIL", style=style)
        parts.append(t)
    for label, frame, style in (("missing (in the baseline, not measured)", result.missing, "bold red"),
                                ("extra (measured, not in the baseline)", result.extra, "yellow")):
        if not frame.empty:
            parts.append(Text(f"{label}: {len(frame)} row(s)", style=style))
            for _, r in frame.iterrows():
                parts.append(Text("  " + ", ".join(f"{c}={r[c]}" for c in frame.columns if r[c]), style=style))
    if tested.any():
        flipped = sum(sum(f) for f in result.diff.loc[tested, "flips"])
        parts.append(Text(f"{int(tested.sum())} error value(s) paired image by image with the leaderboard's outcomes: "
                          f"{flipped} image flip(s) in all (flips: right→wrong/wrong→right); p: exact McNemar on "
                          f"the flips, Holm-adjusted over the {int(tested.sum())}; p < {ALPHA} fails"))
    verdict = (Text(f"check passed: {n} value(s) within tolerance", style="bold green") if result.ok else
               Text(f"check FAILED: {n_bad} of {n} value(s) out of tolerance or significantly changed, "
                    f"{len(result.missing)} row(s) missing", style="bold red"))
    parts.append(verdict)
    return Group(*parts)


def _flips_cell(f: Any) -> str:
    return "–" if f is None or (isinstance(f, float) and math.isnan(f)) else f"{f[0]}/{f[1]}"


def _p_cell(p: float) -> str:
    return "–" if p is None or math.isnan(p) else "<1e-4" if p < 1e-4 else f"{p:.3g}"


def _num(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.{DECIMALS}f}"

"""The corruption report: a table corruption x severity with a summary row, mCE, relative mCE and
the mean error per family for each model, and a plot of error against severity per family.

Reads stored records of any protocol whose shifts are of kind ``corruption`` (``corruptions``,
``corruptions-lite``, ``corruptions-extra``). CE is normalized by a reference network: AlexNet's
published ImageNet-C errors on ImageNet (``reference="auto"`` or ``"alexnet"``), or any model of
the same results (``reference=MODEL``, e.g. the plain ResNet on the built-in digits, where
AlexNet's ImageNet errors mean nothing), or none.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DgbenchError, UnknownNameError
from ..metrics.corruption import BENCHMARK, SEVERITIES, CorruptionSummary, Reference, alexnet, summarize
from .frame import summarize as summarize_frame
from .frame import variant_label
from .tables import NoResultsError

FAMILIES = ("noise", "blur", "weather", "digital")
FORMATS = ("markdown", "csv")
METRIC = "top1_err"


@dataclass
class ModelReport:
    dataset: str
    protocol: str
    model: str  # variant label
    summary: CorruptionSummary


def _corruption_shifts(frame: pd.DataFrame) -> dict[str, tuple[str, int, str]]:
    """shift name -> (corruption, severity, group), from the shift specs the records carry."""
    out = {}
    for shift, spec in zip(frame["shift"], frame["shift_spec"]):
        if isinstance(spec, Mapping) and spec.get("kind") == "corruption":
            p = spec["params"]
            out[shift] = (str(p["corruption"]), int(p["severity"]), str(p["group"]))
    return out


def _reference_from(label: str, reports: list[ModelReport]) -> Reference:
    """A model of the same results as the CE normalizer (its mean error per corruption, clean error)."""
    hit = [r for r in reports if r.model == label]
    if not hit:
        raise UnknownNameError("reference model", label, [r.model for r in reports] + ["auto", "alexnet", "none"])
    s = hit[0].summary
    complete = {c: sum(v.values()) / len(v) for c, v in s.errors.items() if all(k in v for k in SEVERITIES)}
    if s.clean is None or not complete:
        raise DgbenchError(f"reference model {label!r} needs its clean error and all 5 severities of a corruption")
    return Reference(label, s.clean, complete, "measured by dgbench in the same results")


def corruption_reports(frame: pd.DataFrame, reference: str = "auto") -> list[ModelReport]:
    """One :class:`ModelReport` per (dataset, protocol, model) with corruption results."""
    info = _corruption_shifts(frame) if not frame.empty else {}
    if not info:
        raise NoResultsError("no stored corruption results (run one first, e.g. "
                             "`dgbench run --model ibn_a --protocol corruptions-lite`)")
    summ = summarize_frame(frame)
    raw: list[tuple[ModelReport, dict[str, str]]] = []
    for (dataset, protocol, model, kwargs), g in summ.groupby(["dataset", "protocol", "model", "model_kwargs"], sort=False):
        rows = {r["shift"]: r for _, r in g.iterrows()}
        errors: dict[str, dict[int, float]] = {}
        groups: dict[str, str] = {}
        for shift, r in rows.items():
            if shift in info and not math.isnan(r[METRIC]):
                c, s, grp = info[shift]
                errors.setdefault(c, {})[s] = float(r[METRIC])
                groups[c] = grp
        if not errors:
            continue
        refs = [r["reference"] for r in rows.values() if r["reference"]]
        clean_row = rows.get(refs[0]) if refs else None
        clean = float(clean_row[METRIC]) if clean_row is not None else None
        raw.append((ModelReport(dataset, protocol, variant_label(model, kwargs), CorruptionSummary(errors, groups, clean)), groups))
    out = []
    for rep, groups in raw:
        ref: Reference | None
        if reference in ("auto", "alexnet"):
            ref = alexnet() if (reference == "alexnet" or rep.dataset.startswith("imagenet")) else None
        elif reference == "none":
            ref = None
        else:
            ref = _reference_from(reference, [r for r, _ in raw if (r.dataset, r.protocol) == (rep.dataset, rep.protocol)])
        rep.summary = summarize(rep.summary.errors, groups, rep.summary.clean, ref)
        out.append(rep)
    return out


def _f(x: float | None, nd: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def render_markdown(reports: list[ModelReport]) -> str:
    lines = []
    for key in dict.fromkeys((r.dataset, r.protocol) for r in reports):
        group = [r for r in reports if (r.dataset, r.protocol) == key]
        refs = {r.summary.reference for r in group}
        lines += [f"**{key[0]} · {key[1]}: top-1 error % under the common corruptions**", ""]
        lines += ["| model | clean | mean | mCE | rel. mCE | " + " | ".join(FAMILIES) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(FAMILIES)]
        for r in group:
            s = r.summary
            lines.append(f"| {r.model} | {_f(s.clean)} | {_f(s.mean_err)} | {_f(s.mce)} | {_f(s.rel_mce)} | "
                         + " | ".join(_f(s.family_err.get(f)) for f in FAMILIES) + " |")
        norm = ", ".join(sorted(x for x in refs if x)) or "none"
        lines += ["", f"mCE and relative mCE normalized by: {norm} (= 100). mean: mean error over the benchmark "
                  "corruptions measured; family columns: mean error over the family's corruptions.", ""]
        missing = {r.summary.mce_missing for r in group if r.summary.mce_missing}
        if missing:
            lines += [f"Not shown: {'; '.join(sorted(missing))}.", ""]
        for r in group:
            lines += _model_table(r)
    return "\n".join(lines)


def _model_table(r: ModelReport) -> list[str]:
    s = r.summary
    sev = [k for k in SEVERITIES if any(k in v for v in s.errors.values())]
    head = ["corruption", "family", *[f"s{k}" for k in sev], "mean", "CE", "rel. CE"]
    lines = [f"*{r.model}* (clean {_f(s.clean)})", "", "| " + " | ".join(head) + " |",
             "|---|---|" + "---:|" * (len(head) - 2)]
    order = [c for c in BENCHMARK if c in s.errors] + sorted(c for c in s.errors if c not in BENCHMARK)
    for c in order:
        v = s.errors[c]
        lines.append(f"| {c} | {s.groups.get(c, '')} | " + " | ".join(_f(v.get(k)) for k in sev)
                     + f" | {_f(sum(v.values()) / len(v))} | {_f(s.ce.get(c))} | {_f(s.rel_ce.get(c))} |")
    lines.append("| **mean** | | " + " | ".join(_f(s.severity_err.get(k)) for k in sev)
                 + f" | {_f(s.mean_err)} | {_f(s.mce)} | {_f(s.rel_mce)} |")
    return lines + [""]


def render_csv(reports: list[ModelReport]) -> str:
    """Long form: one row per (model, corruption, severity), then the summary figures per model."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "protocol", "model", "corruption", "family", "severity", "top1_err"])
    for r in reports:
        s = r.summary
        base = [r.dataset, r.protocol, r.model]
        for c, v in s.errors.items():
            for k in sorted(v):
                w.writerow(base + [c, s.groups.get(c, ""), k, _f(v[k], 2)])
        for name, value in (("clean", s.clean), ("mean", s.mean_err), ("mCE", s.mce), ("relative_mCE", s.rel_mce)):
            w.writerow(base + [name, "", "", _f(value, 2)])
        for fam, value in s.family_err.items():
            w.writerow(base + ["family_mean", fam, "", _f(value, 2)])
    return buf.getvalue()


def render(reports: list[ModelReport], fmt: str = "markdown") -> str:
    if fmt not in FORMATS:
        raise UnknownNameError("corruption report format", fmt, FORMATS)
    return render_markdown(reports) if fmt == "markdown" else render_csv(reports)


def family_curve(s: CorruptionSummary, family: str) -> tuple[list[int], list[float]]:
    """Severity 0 (clean) .. 5 and the mean error over the family's corruptions at each."""
    xs, ys = [], []
    if s.clean is not None:
        xs.append(0)
        ys.append(s.clean)
    for k in SEVERITIES:
        at = [v[k] for c, v in s.errors.items() if s.groups.get(c) == family and k in v]
        if at:
            xs.append(k)
            ys.append(sum(at) / len(at))
    return xs, ys


def plot(reports: list[ModelReport], out: str | os.PathLike) -> Path:
    """One panel per family: top-1 error against severity (0 = clean), one line per model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fams = [f for f in FAMILIES if any(f in r.summary.groups.values() for r in reports)]
    fig = Figure(figsize=(3.2 * len(fams), 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(fams), squeeze=False)[0]
    for ax, fam in zip(axes, fams):
        for r in reports:
            xs, ys = family_curve(r.summary, fam)
            if len(xs) > 1:
                ax.plot(xs, ys, marker="o", label=r.model if len({x.dataset for x in reports}) == 1 else f"{r.model} · {r.dataset}")
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(range(0, 6))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 error (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png", dpi=120)
    os.replace(tmp, path)
    return path


def corruption_grids(summary: pd.DataFrame, protocol: str) -> list:
    """The site's corruption summary of a leaderboard (a summary frame of one protocol): per model,
    the clean error, the mean over the corruptions, the mean per family and mCE (with why it is
    missing); [] when the protocol has no corruption shifts."""
    from .conditions import corruption_of
    from .csvio import fmt_number
    from .site_model import Cell, Grid, Row

    measured = summary[summary["source"] == "dgbench"] if "shift" in summary.columns else summary.iloc[0:0]
    info = {s: corruption_of(s) for s in set(measured["shift"]) if s}
    info = {s: v for s, v in info.items() if v is not None}
    if not info:
        return []
    columns = ["clean", "mean", *FAMILIES, "mCE"]
    rows = []
    for (model, kwargs), g in measured.groupby(["model", "model_kwargs"], sort=True):
        s = _model_summary(g, info, alexnet() if str(g["dataset"].iloc[0]).startswith("imagenet") else None)
        values = [s.clean, s.mean_err, *(s.family_err.get(f) for f in FAMILIES), s.mce]
        cells = [Cell(fmt_number(v), "", "", None) if v is not None else None for v in values[:-1]]
        cells.append(Cell(fmt_number(s.mce), "", "", None) if s.mce is not None else Cell("", "", "", None, title=s.mce_missing or ""))
        rows.append(Row(variant_label(model, kwargs), "dgbench", "", cells, None))
    caption = ("Top-1 error in % (lower is better): clean, the mean over the corruptions measured, the mean per "
               "family (noise, blur, weather, digital) over its corruptions' severities, and mCE (normalized by "
               "AlexNet's ImageNet-C errors on ImageNet; undefined elsewhere or without all 5 severities: hover "
               "the dash for why). The full corruption x severity grid follows.")
    return [Grid(METRIC, "corruption", columns, rows, heading="Corruption summary: top-1 error per family (%)",
                 caption=caption, unit="%")]


def _model_summary(g: pd.DataFrame, info: Mapping[str, tuple[str, int, str]], ref: Reference | None) -> CorruptionSummary:
    errors: dict[str, dict[int, float]] = {}
    groups: dict[str, str] = {}
    clean = None
    for _, r in g.iterrows():
        if r["shift"] in info and not math.isnan(r[METRIC]):
            c, sev, grp = info[r["shift"]]
            errors.setdefault(c, {})[sev] = float(r[METRIC])
            groups[c] = grp
        elif not r["reference"] and not math.isnan(r[METRIC]):
            clean = float(r[METRIC])
    return summarize(errors, groups, clean, ref)

"""``dgbench compare A B --protocol P``: paired per-condition comparison of two models' stored results."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import DgbenchError
from ._app import OutFormat, app, console, note


@app.command("compare")
def compare_cmd(
    model_a: str = typer.Argument(..., help="the reference model (A)"),
    model_b: str = typer.Argument(..., help="the model compared with it (B)"),
    protocol: str = typer.Option("appearance", "--protocol", "-p", help="an appearance-kind protocol"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="whose results (default: the one both have)"),
    metric: str = typer.Option("top1", "--metric", "-m", help="top1 or top5"),
    results: Optional[Path] = typer.Option(None, "--results", help="results directory (default $DGBENCH_RESULTS or ./results)"),
    run_missing: bool = typer.Option(True, "--run/--no-run", help="compute a model's missing results first (as `dgbench run` would)"),
    fmt: OutFormat = typer.Option(OutFormat.rich, "--format", help="rich table, or one JSON line per condition"),
) -> None:
    """Per condition: both errors, B - A with its paired 95 % bootstrap interval, the exact McNemar p
    (and Holm-adjusted over the conditions), and the images each gets right that the other misses."""
    from ..results.paired import MissingRecordsError, compare

    _require_appearance(protocol)
    kw = dict(results=results, dataset=dataset, metric=metric)
    try:
        result = compare(model_a, model_b, protocol, **kw)
    except MissingRecordsError as exc:
        if not run_missing:
            raise
        names = _run_missing(exc.models, protocol, dataset, results)
        model_a, model_b = names.get(model_a, model_a), names.get(model_b, model_b)
        result = compare(model_a, model_b, protocol, **kw)
    if fmt == OutFormat.json:
        for row in result.as_dicts():
            sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
        return
    console.print(_table(result))
    console.print(result.footer(), highlight=False)


def _require_appearance(protocol: str) -> None:
    """Per-image outcomes exist for appearance-kind protocols only; say so for any other."""
    from ..protocols import get

    kind = get(protocol).kind
    if kind != "appearance":
        raise DgbenchError(f"--protocol {protocol}: a {kind} protocol; paired statistics read the per-image "
                           "outcomes of appearance-kind protocols (appearance, appearance-lite, corruptions...)")


def _run_missing(models: list[str], protocol: str, dataset: Optional[str], results: Optional[Path]) -> dict[str, str]:
    """Run the protocol for models without results; their names as stored (an alias resolved)."""
    from ..protocols import RunRequest, run

    names = {}
    for m in models:
        note(f"computing the missing results first: dgbench run --model {m} --protocol {protocol}"
             + (f" --dataset {dataset}" if dataset else ""))
        summary = run(protocol, RunRequest(model=m, dataset=dataset, results=results, note=note))
        if summary.records:
            names[m] = summary.records[0]["model"]
    return names


def _table(result) -> Table:
    from ..results.paired import fmt_p

    # No rules, one space either side: the eight columns fit 80 characters without folding.
    t = Table(title=f"{result.dataset} · {result.protocol}: A = {result.model_a}, B = {result.model_b}",
              box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for col in ("condition", "A err", "B err", "B - A [95% CI]", "p", "Holm p", "A✓B✗", "B✓A✗"):
        first = col == "condition"  # numbers never wrap; a long condition name folds
        t.add_column(col, justify="left" if first else "right", overflow="fold", no_wrap=not first)
    for r in result.rows:
        t.add_row(r.condition, f"{r.err_a:.2f}", f"{r.err_b:.2f}", f"{r.diff:+.2f} [{r.diff_lo:+.2f}, {r.diff_hi:+.2f}]",
                  fmt_p(r.p), fmt_p(r.p_holm), str(r.a_only_right), str(r.b_only_right))
    return t


@app.command("consistency")
def consistency_cmd(
    protocol: str = typer.Option("appearance", "--protocol", "-p", help="an appearance-kind protocol"),
    models: Optional[str] = typer.Option(None, "--model", "-m", help="models a,b,c (default: every stored one)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="whose results (default: the one they share)"),
    metric: str = typer.Option("top1", "--metric", help="top1 or top5"),
    results: Optional[Path] = typer.Option(None, "--results", help="results directory (default $DGBENCH_RESULTS or ./results)"),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich or csv (one row per pair and condition)"),
) -> None:
    """Error consistency between models per condition: Cohen's kappa of their per-image correctness."""
    from ..results.consistency import CAPTION, as_matrix, consistency

    _require_appearance(protocol)
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    frame = consistency(protocol, results=results, dataset=dataset, models=names, metric=metric)
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False, float_format="%.4f"), nl=False)
        return
    wide = as_matrix(frame)
    t = Table(title=f"{protocol}: {metric} error consistency (kappa)", box=None, padding=(0, 1), pad_edge=False,
              header_style="bold")
    t.add_column("models", overflow="fold")
    for c in wide.columns:
        t.add_column(str(c), justify="right", no_wrap=True)
    for pair, row in wide.iterrows():
        t.add_row(str(pair), *("–" if v != v else f"{v:.2f}" for v in row))  # v != v: NaN
    console.print(t)
    console.print(CAPTION, highlight=False)

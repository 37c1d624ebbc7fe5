"""``dgbench sweep``: a models x protocols x datasets x seeds x precisions grid of runs (docs/sweeps.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..errors import DgbenchError
from ._app import app, console

_STYLE = {"done": "green", "running": "cyan", "failed": "red", "missing": "dim"}


def _ints(values: list[str], flag: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise DgbenchError(f"{flag} {','.join(values)!r}: expected integers, e.g. 0,1,2") from None


def _slurm_settings(items: list[str]) -> dict[str, Any]:
    """``--slurm KEY=VALUE`` (repeatable): submitit parameters, values read as JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DgbenchError(f"--slurm {item!r}: expected KEY=VALUE, e.g. --slurm slurm_partition=gpu")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def status_table(states: list[Any], title: str) -> Table:
    """The grid, one row per cell: its state and, for a failure, the one-line reason. An axis
    with one value across the grid goes in the title instead of a column (80 columns stay readable)."""
    axes = {"model": lambda c: c.model, "protocol": lambda c: c.protocol,
            "dataset": lambda c: c.dataset or "(default)", "seed": lambda c: str(c.seed),
            "precision": lambda c: c.precision}
    shown = {k: f for k, f in axes.items() if len({f(s.cell) for s in states}) > 1 or k == "model"}
    fixed = [f"{k} {f(states[0].cell)}" for k, f in axes.items() if k not in shown and states]
    table = Table(title=escape(" · ".join([title, *fixed])), title_justify="left")
    for col in [*shown, "state"]:
        table.add_column(col, no_wrap=col != "model")
    table.add_column("detail", overflow="fold")
    for s in states:
        table.add_row(*(escape(f(s.cell)) for f in shown.values()), f"[{_STYLE[s.state]}]{s.state}[/]",
                      escape(s.reason))  # a reason may hold [brackets]: text, not markup
    return table


def _counts(states: list[Any]) -> str:
    from ..sweep import STATES

    return " · ".join(f"{sum(s.state == k for s in states)} {k}" for k in STATES)


@app.command("sweep")
def sweep_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="a sweep TOML file (tables grid, run, launcher: docs/sweeps.md); flags override it"),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="models: names, aliases, globs, all, pkg.mod:fn, timm/NAME (comma-separated or repeated)"),
    protocol: Optional[list[str]] = typer.Option(None, "--protocol", "-p", help="protocols (comma-separated or repeated)"),
    dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="datasets (default: each protocol's)"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="seeds, e.g. 0,1,2"),
    precision: Optional[list[str]] = typer.Option(None, "--precision", help="fp32, tf32, bf16, fp16 (comma-separated or repeated)"),
    subset: Optional[int] = typer.Option(None, "--subset", min=1, help="every cell: fixed class-balanced subset of N images"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="every cell: first N images only"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, help="data-loading processes per cell"),
    device: Optional[str] = typer.Option(None, "--device", help="every cell's device (default auto)"),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained"),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", help="constructor keywords as JSON, for every model"),
    results: Optional[Path] = typer.Option(None, "--results", help="results directory (default $DGBENCH_RESULTS or ./results)"),
    launcher: Optional[str] = typer.Option(None, "--launcher", "-l", help="local (in process), multi-gpu (a process per GPU) or slurm (submitit)"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="multi-gpu: worker processes (default: the visible GPUs)"),
    gpus_per_cell: int = typer.Option(1, "--gpus-per-cell", min=1, help="multi-gpu: torchrun ranks per cell"),
    slurm: Optional[list[str]] = typer.Option(None, "--slurm", help="submitit parameter KEY=VALUE (repeatable), e.g. slurm_partition=gpu timeout_min=60 gpus_per_node=1"),
    cells_per_job: int = typer.Option(1, "--cells-per-job", min=1, help="slurm: cells run one after another in each job"),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="slurm: submitit's cluster (default: slurm when sbatch is there; 'local' runs the jobs on this machine)"),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="slurm: wait for the jobs and show the grid"),
    show_status: bool = typer.Option(False, "--status", help="print the grid's state (done/running/failed/missing) and launch nothing"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the cells that would be launched"),
    retry_running: bool = typer.Option(False, "--retry-running", help="also launch cells recorded as running (e.g. jobs of another host that died)"),
) -> None:
    """Run a grid of `dgbench run` cells (models x protocols x datasets x seeds x precisions),
    skipping the cells already done; re-running the same command resumes and retries."""
    from ..config import results_dir
    from ..sweep import GridSpec, load_toml, status
    from ..sweep.grid import check_options, split_list

    grid, launch_cfg = load_toml(config) if config else (GridSpec(), {})
    for axis, values in (("models", model), ("protocols", protocol), ("datasets", dataset), ("precisions", precision)):
        if values:
            setattr(grid, axis, split_list(values))
    if seeds:
        grid.seeds = _ints(split_list([seeds]), "--seeds")
    flags = dict(subset=subset, limit=limit, batch_size=batch_size, workers=workers, device=device,
                 pretrained=pretrained, model_kwargs=_kwargs(model_kwargs))
    grid.options.update({k: v for k, v in flags.items() if v is not None})
    check_options(grid.options, "sweep option")
    root = results_dir(results)
    how = _launch(launch_cfg, launcher, gpus, gpus_per_cell, _slurm_settings(slurm or []), cells_per_job, cluster, wait)
    if show_status or dry_run:
        states = status(grid, root)
        if dry_run:
            states = [s for s in states if s.state != "done"]
        console.print(status_table(states, f"sweep · {root}"))
        console.print(_counts(status(grid, root)), highlight=False)
        return
    _run(grid, root, how, retry_running)


def _kwargs(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    from .run import _json_kwargs

    return _json_kwargs(text)


def _launch(cfg: dict[str, Any], launcher: str | None, gpus: int | None, gpus_per_cell: int,
            slurm: dict[str, Any], cells_per_job: int, cluster: str | None, wait: bool) -> Any:
    from ..sweep import LAUNCHERS, Launch

    known = {"name", "gpus", "gpus_per_cell", "slurm", "cells_per_job", "cluster", "wait"}
    extra = sorted(set(cfg) - known)
    if extra:
        raise DgbenchError(f"launcher.{extra[0]} is not a launcher setting (known: {', '.join(sorted(known))})")
    name = launcher or cfg.get("name", "local")
    if name not in LAUNCHERS:
        raise DgbenchError(f"--launcher {name!r}: not one of {', '.join(LAUNCHERS)}")
    if not isinstance(cfg.get("slurm", {}), dict):
        raise DgbenchError(f"launcher.slurm = {cfg['slurm']!r}: expected a table of submitit parameters")
    try:
        return Launch(launcher=name, gpus=gpus if gpus is not None else cfg.get("gpus"),
                      gpus_per_cell=gpus_per_cell if gpus_per_cell != 1 else int(cfg.get("gpus_per_cell", 1)),
                      slurm={**cfg.get("slurm", {}), **slurm},
                      cells_per_job=cells_per_job if cells_per_job != 1 else int(cfg.get("cells_per_job", 1)),
                      cluster=cluster or cfg.get("cluster"), wait=wait or bool(cfg.get("wait", False)))
    except (TypeError, ValueError) as exc:
        raise DgbenchError(f"launcher table: gpus_per_cell and cells_per_job must be integers ({exc})") from None


def _run(grid: Any, root: Path, how: Any, retry_running: bool) -> None:
    from ..sweep import status, sweep

    cells = grid.cells()
    title = f"sweep · {how.launcher}"
    if not console.is_terminal:  # a log, not a screen: the grid once, at the end
        report = sweep(cells, root, how, retry_running=retry_running)
        console.print(status_table(report.states, title))
    else:
        with Live(status_table(status(cells, root), title), console=console, refresh_per_second=2) as live:
            report = sweep(cells, root, how, retry_running=retry_running,
                           poll=lambda: live.update(status_table(status(cells, root), title)))
            live.update(status_table(report.states, title))
    if report.job_ids and how.launcher == "slurm":
        console.print(f"submitted {len(report.job_ids)} job(s): {', '.join(report.job_ids)}; "
                      "`dgbench sweep --status` with the same grid shows their progress", highlight=False)
    n = len(report.launched)
    line = (f"{len(cells)} cell(s): {report.skipped_done} already done, {n} launched, "
            f"{report.left_running} left running · {_counts(report.states)}")
    done_s = report.cells_run_s
    if n and done_s:  # the launched cells finished here (not submitted and left to run)
        line += f" · {report.wall_s:,.1f} s for the launched cells, {done_s:,.1f} s inside them"
        if how.launcher == "local":  # one after another: the rest is the launcher's
            line += f" (launcher overhead {(report.wall_s - done_s) / n:,.2f} s per cell)"
    console.print(line, highlight=False)
    if any(s.state == "failed" for s in report.states):
        raise typer.Exit(1)

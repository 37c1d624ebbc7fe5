"""Sweeps: a grid of ``dgbench run`` cells launched through an existing engine, resumable, one store.

    from dgbench.sweep import GridSpec, Launch, sweep, status
    grid = GridSpec(models=["small_resnet*"], protocols=["appearance-lite"], datasets=["digits"],
                    seeds=[0, 1], options={"subset": 200})
    report = sweep(grid, "results", Launch("local"))      # or Launch("slurm", slurm={...})
    for s in status(grid, "results"): print(s.cell.label, s.state, s.reason)

A sweep launches only the cells that are not done (see :mod:`dgbench.sweep.ledger`): a cell that
failed or died is run again by the next ``sweep``, and a cell still running is left alone (on this
host, one whose process is gone counts as failed). Inside a cell the protocol skips the records
already stored, by key, so a re-run measures only what is missing. With the slurm launcher the
results folder switches to the store's batches layout (see :mod:`dgbench.results.store`), which
needs no file lock on the shared filesystem.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..results.store import ResultStore
from .grid import Cell, GridSpec, load_toml
from .launchers import LAUNCHERS, Launch, Poll, launch
from .ledger import STATES, CellState, Ledger

__all__ = ["Cell", "CellState", "GridSpec", "LAUNCHERS", "Launch", "STATES", "SweepReport", "load_toml",
           "status", "sweep"]


@dataclass
class SweepReport:
    cells: list[Cell]
    launched: list[Cell] = field(default_factory=list)
    skipped_done: int = 0
    left_running: int = 0
    job_ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    states: list[CellState] = field(default_factory=list)

    @property
    def cells_run_s(self) -> float:
        """The cells' own time (inside the protocol) of the cells this sweep launched and finished."""
        ids = {c.id for c in self.launched}
        return sum((s.entry or {}).get("run_s", 0.0) for s in self.states if s.cell.id in ids and s.state == "done")


def status(grid: GridSpec | list[Cell], results: str | os.PathLike) -> list[CellState]:
    """Each cell of the grid: done, running, failed (with its one-line reason) or missing."""
    cells = grid.cells() if isinstance(grid, GridSpec) else grid
    return Ledger(results).states(cells)


def sweep(grid: GridSpec | list[Cell], results: str | os.PathLike, how: Launch | None = None, *,
          retry_running: bool = False, poll: Poll | None = None) -> SweepReport:
    """Launch the grid's cells that are not done; returns what was launched and every cell's state after."""
    how = how or Launch()
    results = Path(results)
    cells = grid.cells() if isinstance(grid, GridSpec) else grid
    report = SweepReport(cells)
    for s in status(cells, results):
        if s.state == "done":
            report.skipped_done += 1
        elif s.state == "running" and not retry_running:
            report.left_running += 1
        else:
            report.launched.append(s.cell)
    if how.launcher == "slurm":
        ResultStore(results, batches=True)  # many nodes, one shared folder: no file locks needed
    started = time.perf_counter()
    if report.launched:
        report.job_ids = launch(report.launched, results, how, poll or (lambda: None))
    report.wall_s = time.perf_counter() - started
    report.states = status(cells, results)
    return report

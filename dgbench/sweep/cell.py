"""Run cells: the one code path of every launcher (in process, a worker process, a submitit job).

A cell is a :func:`dgbench.protocols.run` of one model; the protocol itself skips the records
already stored (by key) and appends what it measures only once a model's pass is complete, so a
cell killed midway leaves nothing half-written and its re-run measures only what is missing.
Around it, the cell's ledger entry goes ``running`` -> ``done`` (its keys) or ``failed`` (one line).

    python -m dgbench.sweep RESULTS CELLS.json     # what a multi-gpu worker process runs (__main__.py)
"""
from __future__ import annotations

import os
import time
import traceback
from typing import Any

from ..errors import DgbenchError
from .grid import Cell
from .ledger import Ledger


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def run_cell(cell: Cell, results: str | os.PathLike, *, job_id: str | None = None) -> bool:
    """Run one cell in this process and record its outcome; True when it finished."""
    from ..protocols import RunRequest
    from ..protocols import run as run_protocol

    ledger = Ledger(results)
    if _is_rank0():
        ledger.write(cell, state="running", job_id=job_id)
    request = RunRequest(model=cell.model, dataset=cell.dataset, seed=cell.seed, precision=cell.precision,
                         results=results, progress=False, **dict(cell.options))
    started = time.perf_counter()
    try:
        summary = run_protocol(cell.protocol, request)
    except Exception as exc:  # noqa: BLE001 - any failure is the cell's, recorded with its reason
        if _is_rank0():
            ledger.logs.mkdir(parents=True, exist_ok=True)
            (ledger.logs / f"{cell.id}.log").write_text(traceback.format_exc(), encoding="utf-8")
            ledger.write(cell, state="failed", job_id=job_id, reason=one_line(exc))
        return False
    if summary.is_main:
        ledger.write(cell, state="done", job_id=job_id, keys=[r["key"] for r in summary.records],
                     computed=summary.computed, reused=summary.reused, run_s=round(time.perf_counter() - started, 3))
    return True


def one_line(exc: BaseException) -> str:
    """A failure as one line: a dgbench error's own message, else the exception's type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, DgbenchError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_cells(results: str, cells: list[dict[str, Any]], job_id: str | None = None) -> int:
    """Run cells one after another (a worker's or a job's share); the number that finished."""
    return sum(run_cell(Cell.from_dict(c), results, job_id=job_id) for c in cells)


def run_cells_job(results: str, cells: list[dict[str, Any]]) -> int:
    """A submitit job: its cells, with the job id (SLURM array task or local) in the ledger."""
    job_id = None
    try:
        import submitit

        job_id = submitit.JobEnvironment().job_id
    except (ImportError, RuntimeError):
        pass
    return run_cells(results, cells, job_id=job_id)

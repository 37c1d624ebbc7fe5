"""Launchers: how a sweep's pending cells run. Each hands cells to :mod:`dgbench.sweep.cell`.

* ``local``: one after another, in this process (no start-up cost per cell).
* ``multi-gpu``: one worker process per visible GPU (``CUDA_VISIBLE_DEVICES`` set to its GPU), each
  running its share of the cells; with ``gpus_per_cell`` > 1, each cell is a ``torchrun`` over
  that many GPUs (dgbench's runtime shards the data across the ranks).
* ``slurm``: a submitit job array, one job per ``cells_per_job`` cells, with submitit's parameters
  (``slurm_partition``, ``timeout_min``, ``gpus_per_node``, ``cpus_per_task``,
  ``slurm_array_parallelism``, ...). ``cluster="local"`` runs the same jobs through submitit's local
  executor (subprocesses on this machine), which is how the tests run it.

No Ray launcher: a Ray cluster is one more service to deploy and keep alive for what submitit does
with the scheduler a cluster already has, and locally the multi-gpu launcher needs nothing at all.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DgbenchError
from .cell import one_line, run_cell, run_cells_job
from .grid import Cell
from .ledger import Ledger

LAUNCHERS = ("local", "multi-gpu", "slurm")
# submitit's own default time limit is 5 minutes, which kills most cells: 4 hours unless set.
DEFAULT_TIMEOUT_MIN = 240
Poll = Callable[[], None]


@dataclass
class Launch:
    """How to launch: the launcher's name and its settings."""
    launcher: str = "local"
    gpus: int | None = None  # multi-gpu: worker processes (default: the visible GPUs)
    gpus_per_cell: int = 1  # multi-gpu: torchrun ranks per cell
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit parameters
    cluster: str | None = None  # submitit: None (auto: slurm when there), "slurm", "local", "debug"
    cells_per_job: int = 1
    wait: bool = False  # slurm: wait for the jobs (always for submitit's local executor)


def launch(cells: list[Cell], results: Path, how: Launch, poll: Poll = lambda: None) -> list[str]:
    """Run (or submit) ``cells``; the job ids for slurm, else an empty list. ``poll`` is called
    as cells progress (the live view)."""
    if how.launcher == "local":
        for cell in cells:
            run_cell(cell, results)
            poll()
        return []
    if how.launcher == "multi-gpu":
        _multi_gpu(cells, results, how, poll)
        return []
    if how.launcher == "slurm":
        return _slurm(cells, results, how, poll)
    raise DgbenchError(f"--launcher {how.launcher!r}: not one of {', '.join(LAUNCHERS)}")


def _visible_gpus(how: Launch) -> list[str]:
    if how.gpus is not None:
        if how.gpus < 1:
            raise DgbenchError(f"--gpus {how.gpus}: need at least 1 worker")
        return [str(i) for i in range(how.gpus)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [g for g in visible.split(",") if g.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if not ids:
        raise DgbenchError("--launcher multi-gpu: no GPU is visible (CUDA_VISIBLE_DEVICES or torch.cuda); "
                           "use --launcher local, or --gpus N to run N worker processes anyway")
    return ids


def _multi_gpu(cells: list[Cell], results: Path, how: Launch, poll: Poll) -> None:
    gpus = _visible_gpus(how)
    k = how.gpus_per_cell
    if k < 1 or k > len(gpus):
        raise DgbenchError(f"--gpus-per-cell {k}: must be between 1 and the {len(gpus)} GPU(s) visible")
    groups = [gpus[i:i + k] for i in range(0, len(gpus) - k + 1, k)]
    shares = [cells[i::len(groups)] for i in range(len(groups))]
    folder = results / "sweeps" / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    threads = [threading.Thread(target=_run_group, args=(group, share, results, folder, i, k), daemon=True)
               for i, (group, share) in enumerate(zip(groups, shares)) if share]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        poll()
    poll()


def _run_group(gpus: list[str], cells: list[Cell], results: Path, folder: Path, index: int, k: int) -> None:
    """One worker process over ``cells`` (k == 1), or one torchrun per cell over ``k`` GPUs."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(gpus), DGBENCH_SWEEP_WORKER=f"gpu{','.join(gpus)}")
    batches = [cells] if k == 1 else [[c] for c in cells]
    for j, batch in enumerate(batches):
        spec = folder / f"{os.getpid()}-w{index}-{j}.json"
        spec.write_text(json.dumps([c.as_dict() for c in batch]), encoding="utf-8")
        runner = [sys.executable] if k == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  f"--nproc-per-node={k}"]
        log = results / "sweeps" / "logs" / f"worker-{'-'.join(gpus)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:  # not the terminal: the live grid is there
            subprocess.run([*runner, "-m", "dgbench.sweep", str(results), str(spec)], env=env, check=False,
                           stdout=out, stderr=subprocess.STDOUT)


def _slurm(cells: list[Cell], results: Path, how: Launch, poll: Poll) -> list[str]:
    try:
        import submitit
    except ImportError:
        raise DgbenchError("--launcher slurm needs submitit: pip install 'dgbench[sweep]' (or submitit)") from None
    executor = submitit.AutoExecutor(folder=str(results / "sweeps" / "submitit" / "%j"), cluster=how.cluster)
    try:
        executor.update_parameters(**{"name": "dgbench-sweep", "timeout_min": DEFAULT_TIMEOUT_MIN, **how.slurm})
    except (ValueError, TypeError) as exc:
        raise DgbenchError(f"slurm settings {sorted(how.slurm)}: {str(exc).splitlines()[0]}") from None
    n = max(1, how.cells_per_job)
    chunks = [cells[i:i + n] for i in range(0, len(cells), n)]
    ledger = Ledger(results)
    for cell in cells:  # before submitting: a job may start (and record itself) at once
        ledger.write(cell, state="running", queued=True, pid=None)
    try:
        with executor.batch():  # one job array
            jobs = [executor.submit(run_cells_job, str(results), [c.as_dict() for c in chunk]) for chunk in chunks]
    except Exception as exc:  # noqa: BLE001 - sbatch refused: nothing runs, say why
        for cell in cells:
            ledger.write(cell, state="failed", reason=f"submission failed: {one_line(exc)}")
        raise DgbenchError(f"submitit could not submit the sweep's jobs: {one_line(exc)}") from None
    if how.wait or executor.cluster in ("local", "debug"):
        while not all(j.done() for j in jobs):
            time.sleep(1.0)
            poll()
        _settle(ledger, jobs, chunks)
        poll()
    return [str(j.job_id) for j in jobs]


def _settle(ledger: Ledger, jobs: list[Any], chunks: list[list[Cell]]) -> None:
    """A finished job's cells still recorded as running were cut short (killed, timed out)."""
    for job, chunk in zip(jobs, chunks):
        for cell in chunk:
            entry = ledger.read(cell.id) or {}
            if entry.get("state") == "running":
                ledger.write(cell, state="failed", job_id=str(job.job_id),
                             reason=f"job {job.job_id} ended ({job.state}) before the cell finished")

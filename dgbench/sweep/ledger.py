"""Where each cell of a sweep stands: one small JSON file per cell, replaced whole (write-then-rename).

``<results>/sweeps/cells/<cell id>.json`` holds the cell's last attempt: ``running`` (host, pid,
job id, start), then ``done`` (the keys of its records, its own run time) or ``failed`` (a
one-line reason; the traceback goes to ``<results>/sweeps/logs/<cell id>.log``). Like the results
store's batches, a file is written under a hidden name and renamed into place, so a reader on any
node sees one whole state, never half of one, and no file lock is needed.

A cell's state as the sweep reads it:

* **done**: its last attempt finished and every key it stored is in the results store;
* **running**: an attempt started and has not finished, or its job is queued; on this host, an
  attempt whose process is gone (killed, out of memory) reads **failed** instead. On a cluster, a
  job killed without a chance to record it (node failure) stays **running**: the launcher marks
  the cells of jobs it waited for, and ``sweep --retry-running`` relaunches the rest;
* **failed**: the last attempt raised (its reason) or died;
* **missing**: never attempted, or its records are no longer in the store.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results.store import ResultStore
from .grid import Cell

STATES = ("done", "running", "failed", "missing")


@dataclass
class CellState:
    cell: Cell
    state: str
    reason: str = ""
    entry: dict[str, Any] | None = None


class Ledger:
    def __init__(self, results: str | os.PathLike):
        self.results = Path(results)
        self.dir = self.results / "sweeps" / "cells"
        self.logs = self.results / "sweeps" / "logs"

    def read(self, cell_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / f"{cell_id}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # cannot happen with write-then-rename; a hand-edited file reads as never run
            return None

    def write(self, cell: Cell, **entry: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        entry = {"cell": cell.as_dict(), "host": socket.gethostname(), "pid": os.getpid(),
                 "time": time.time(), **entry}
        final = self.dir / f"{cell.id}.json"
        tmp = self.dir / f".tmp-{cell.id}-{socket.gethostname()}-{os.getpid()}"
        tmp.write_text(json.dumps(entry, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, final)

    def state(self, cell: Cell, store: ResultStore) -> CellState:
        entry = self.read(cell.id)
        if entry is None:
            return CellState(cell, "missing")
        if entry["state"] == "done":
            have = store.completed_keys(cell.protocol)
            if all(k in have for k in entry.get("keys", [])):
                return CellState(cell, "done", entry=entry)
            return CellState(cell, "missing", "its records are no longer in the store", entry)
        if entry["state"] == "running":
            if entry.get("queued"):
                return CellState(cell, "running", "queued (submitted, not started)", entry)
            if entry.get("host") == socket.gethostname() and not _alive(int(entry.get("pid", 0))):
                return CellState(cell, "failed", f"process {entry.get('pid')} died before the cell finished "
                                 "(killed or out of memory)", entry)
            return CellState(cell, "running", _where(entry), entry)
        return CellState(cell, "failed", entry.get("reason", ""), entry)

    def states(self, cells: list[Cell]) -> list[CellState]:
        store = ResultStore(self.results)  # one store: its index serves every cell
        return [self.state(c, store) for c in cells]


def _where(entry: dict[str, Any]) -> str:
    job = f"job {entry['job_id']}, " if entry.get("job_id") else ""
    return f"{job}{entry.get('host')} pid {entry.get('pid')}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that id
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed child not yet reaped still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False

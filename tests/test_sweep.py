"""dgbench sweep: the grid, the ledger, and a killed sweep resumed through local and submitit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgbench.errors import DgbenchError
from dgbench.results.frame import load_results
from dgbench.results.store import ResultStore
from dgbench.sweep import GridSpec, Launch, load_toml, status, sweep
from dgbench.sweep.grid import Cell
from dgbench.sweep.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
MODELS = ["small_resnet", "small_resnet_ibn_a", "small_resnet_ibn_b"]
PROTOCOLS = ["appearance-lite", "sweep-std"]
OPTIONS = {"subset": 20, "workers": 0, "device": "cpu"}
GRID_FLAGS = ["-m", ",".join(MODELS), "-p", ",".join(PROTOCOLS), "--dataset", "digits", "--subset", "20",
              "-j", "0", "--device", "cpu"]


def _grid() -> GridSpec:
    return GridSpec(models=MODELS, protocols=PROTOCOLS, datasets=["digits"], options=dict(OPTIONS))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")


def _numbers(root: Path) -> dict[str, tuple]:
    """What a sweep measured: per key, the metrics and drops (timings and hosts aside)."""
    store = ResultStore(root)
    copies = store.records(copies=True)
    records = store.records()
    assert len(copies) == len(records), "a key was stored twice"
    return {r["key"]: (r["model"], r["shift"], r["metrics"], r["drop"]) for r in records}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The records of the grid run once, uninterrupted, one cell after another."""
    root = tmp_path_factory.mktemp("sequential")
    report = sweep(_grid(), root, Launch("local"))
    assert [s.state for s in report.states] == ["done"] * 6
    return _numbers(root)


def _kill_while_running(proc: subprocess.Popen, root: Path, timeout: float = 400) -> str:
    """Wait for one cell done and another running, then kill -9 the process running that cell."""
    cells = Ledger(root).dir
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = [json.loads(p.read_text()) for p in cells.glob("*.json")] if cells.is_dir() else []
        running = [e for e in entries if e["state"] == "running" and not e.get("queued")]
        if any(e["state"] == "done" for e in entries) and running:
            os.kill(running[0]["pid"], signal.SIGKILL)
            return running[0]["cell"]["model"]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no cell was ever running")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["--launcher", "local"],
                                      ["--launcher", "slurm", "--cluster", "local", "--cells-per-job", "2"]],
                         ids=["local", "submitit-local"])
def test_a_killed_sweep_resumes_to_the_records_of_an_uninterrupted_run(
        launcher: list[str], sequential: dict[str, tuple], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "dgbench", "sweep", *GRID_FLAGS, *launcher, "--results", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_while_running(proc, tmp_path)
    proc.communicate(timeout=600)
    first = status(_grid(), tmp_path)
    assert sum(s.state == "done" for s in first) < 6  # the kill did interrupt the sweep
    failed = [s for s in first if s.state == "failed"]
    assert failed and all(s.reason and "\n" not in s.reason for s in failed)  # the killed cell, and why
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already done" in again.stdout
    assert [s.state for s in status(_grid(), tmp_path)] == ["done"] * 6
    assert _numbers(tmp_path) == sequential  # same keys, same numbers, no key twice
    assert len(load_results(tmp_path)) == len(sequential)  # tables and leaderboards read the merged store
    if "slurm" in launcher:
        assert (tmp_path / "batches").is_dir()  # shared-filesystem layout: write-then-rename batches


def test_grid_from_toml_expands_globs_and_flags_name_bad_fields(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text('[grid]\nmodels = ["small_resnet_ibn_*", "pkg.mod:fn"]\nprotocols = ["appearance-lite"]\n'
                    'seeds = [0, 1]\n[run]\nsubset = 20\n[launcher]\nname = "slurm"\n[launcher.slurm]\ntimeout_min = 5\n')
    grid, launch_cfg = load_toml(path)
    cells = grid.cells()
    models = list(dict.fromkeys(c.model for c in cells))
    assert models[:2] == ["small_resnet_ibn_a", "small_resnet_ibn_ad"] and models[-1] == "pkg.mod:fn"
    assert len(cells) == len(models) * 2 and {c.seed for c in cells} == {0, 1}
    assert launch_cfg == {"name": "slurm", "slurm": {"timeout_min": 5}}
    assert Cell.from_dict(cells[0].as_dict()).id == cells[0].id
    for text, needle in (('[grid]\nmodel = ["a"]\n', "grid.model is not an axis"),
                         ('[grid]\nseeds = ["x"]\n', "grid.seeds = ['x']: expected a non-empty list of ints"),
                         ('[run]\nsubsets = 3\n', "'subsets' is not a run option"),
                         ('[runs]\n', "unknown table 'runs'")):
        path.write_text(text)
        with pytest.raises(DgbenchError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_toml(path)
    with pytest.raises(DgbenchError, match="unknown protocol 'nope'"):
        GridSpec(models=["small_resnet"], protocols=["nope"]).cells()


def test_ledger_reads_a_dead_process_as_failed_and_lost_records_as_missing(tmp_path: Path) -> None:
    cell = _grid().cells()[0]
    ledger = Ledger(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger.write(cell, state="running")
    assert status([cell], tmp_path)[0].state == "running"  # this very process: alive
    entry = json.loads((ledger.dir / f"{cell.id}.json").read_text())
    (ledger.dir / f"{cell.id}.json").write_text(json.dumps(dict(entry, pid=dead.pid)))
    s = status([cell], tmp_path)[0]
    assert s.state == "failed" and f"process {dead.pid} died" in s.reason
    ledger.write(cell, state="done", keys=["k-not-stored"])
    assert status([cell], tmp_path)[0].state == "missing"
    assert not list(ledger.dir.glob(".tmp-*"))


def test_a_failing_cell_is_one_line_in_the_status_and_the_sweep_exits_non_zero(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "dgbench", "sweep", "-m", "small_resnet", "-p", "appearance-lite",
           "--dataset", "no-such-data", "--results", str(tmp_path)]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    st = subprocess.run(cmd + ["--status"], env=_env(), capture_output=True, text=True, timeout=300)
    row = [line for line in st.stdout.splitlines() if "failed" in line and line.startswith("│")]
    assert len(row) == 1 and "no-such-data" in row[0], st.stdout
    assert "0 done · 0 running · 1 failed · 0 missing" in st.stdout
    log = next((tmp_path / "sweeps" / "logs").glob("*.log")).read_text()
    assert "Traceback" in log  # the whole story is kept for whoever debugs it


def test_multi_gpu_launcher_runs_one_worker_process_per_gpu(tmp_path: Path) -> None:
    # On a machine without GPUs, --gpus 2 still starts two worker processes (each on the CPU).
    grid = GridSpec(models=MODELS[:2], protocols=PROTOCOLS[:1], datasets=["digits"], options=dict(OPTIONS))
    report = sweep(grid, tmp_path, Launch("multi-gpu", gpus=2))
    assert [s.state for s in report.states] == ["done", "done"]
    assert {s.entry["pid"] for s in report.states} != {os.getpid()} and len({s.entry["pid"] for s in report.states}) == 2
    assert {s.entry["job_id"] for s in report.states} == {"gpu0", "gpu1"}


def test_multi_gpu_launcher_runs_a_cell_as_torchrun_over_its_gpus(tmp_path: Path) -> None:
    # --gpus-per-cell 2: the cell is one torchrun of 2 ranks (on the CPU here, through gloo).
    grid = GridSpec(models=MODELS[:1], protocols=PROTOCOLS[:1], datasets=["digits"], options=dict(OPTIONS))
    report = sweep(grid, tmp_path, Launch("multi-gpu", gpus=2, gpus_per_cell=2))
    assert [s.state for s in report.states] == ["done"]
    assert {r["world_size"] for r in ResultStore(tmp_path).records()} == {2}

"""kill -9 during a real `dgbench run` never leaves a record without its per-image outcomes, and
an outcome file without its record only until the resumed run computes that key.

Real subprocesses of the built-in benchmark (a small model under the five appearance shifts) are
killed with SIGKILL: at seeded random moments, and once exactly between the outcome files and the
record append (the widest window, reached by wrapping ``outcomes.write_all`` in the child).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dgbench.results import outcomes
from dgbench.results.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
MODELS = "small_resnet"
RUN = ["run", "--model", MODELS, "--protocol", "appearance", "--no-progress", "--workers", "0"]
# The child dies by SIGKILL right after writing a model's outcome files, before its records.
KILL_AFTER_OUTCOMES = ("import os, sys; from dgbench.results import outcomes; from dgbench.cli import main; "
                       "w = outcomes.write_all; "
                       "outcomes.write_all = lambda *a, **k: (w(*a, **k), os.kill(os.getpid(), 9)); "
                       "sys.argv = ['dgbench'] + sys.argv[1:]; main()")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DGBENCH_CACHE": str(tmp_path / "cache"),
           "DGBENCH_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("DGBENCH_IMAGENET", None)
    env.pop("WORLD_SIZE", None)
    return env


def _state(results: Path) -> tuple[set[str], set[str], list[Path]]:
    """(keys with a record, keys with an outcome file, temp files) of the appearance store."""
    keys = {r["key"] for r in ResultStore(results).iter_records("appearance")} if results.exists() else set()
    folder = results / outcomes.FOLDER / "appearance"
    files = {p.name.removesuffix(".npz") for p in folder.glob("*.npz")} if folder.exists() else set()
    return keys, files, sorted(folder.glob(".*.tmp")) if folder.exists() else []


def _check_after_kill(results: Path) -> set[str]:
    keys, files, _ = _state(results)
    assert keys <= files, f"records without outcomes: {sorted(keys - files)}"
    for key in keys:  # every recorded key's file is whole and readable
        out, order = outcomes.read(results, "appearance", key)
        assert len(out) == 599 and order
    frame = outcomes.load(results, "appearance")  # readers see recorded keys only
    assert set(frame["key"]) == keys if keys else frame.empty
    return files - keys


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    results, env = tmp_path / "results", _env(tmp_path)
    cmd = [sys.executable, "-m", "dgbench", *RUN, "--results", str(results)]
    rng = random.Random(21)
    for _ in range(2):  # importing, evaluating or writing
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(3.0, 7.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _check_after_kill(results)


def test_sigkill_between_outcomes_and_records_then_resume(tmp_path: Path) -> None:
    results, env = tmp_path / "results", _env(tmp_path)
    # The widest window, hit for sure: the outcome files are written, the records are not.
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_OUTCOMES, *RUN, "--results", str(results)],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    folder = results / outcomes.FOLDER / "appearance"
    (folder / ".stale.npz.123.tmp").write_bytes(b"half")  # as a writer killed mid-file leaves it
    (folder / f".{sorted(folder.glob('*.npz'))[0].name}.123.tmp").write_bytes(b"half")
    assert len(_check_after_kill(results)) == 5  # five files, no record: never read
    # Resumed: each key has exactly its record and its outcome file; the temp file of a key
    # written again is gone.
    done = subprocess.run([sys.executable, "-m", "dgbench", *RUN, "--results", str(results)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    keys, files, tmps = _state(results)
    assert len(keys) == 5 and keys == files
    assert [p.name for p in tmps] == [".stale.npz.123.tmp"]  # a key never written again keeps its temp file
    frame = outcomes.load(results, "appearance")
    assert len(frame) == 5 * 599 and np.isin(frame["key"], list(keys)).all()

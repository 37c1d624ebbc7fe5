"""Benchmark: many writer processes on one results store, killed at random (kill -9).

Each writer does what a protocol does: it reads the keys already stored, picks a few keys of a
shared key space that are missing, sleeps a moment (the computation), appends their records in one
``append`` (padded to up to ``--pad`` bytes, so that a kill can land mid-write), and only then
acknowledges them in its own fsync'd log. Writers overlap on purpose, so two of them often store
the same key (the race a resumed run and a survivor of the killed run, or two sweeps, run into).
Every ``--kill-every`` seconds on average the supervisor kill -9s a random writer and starts a
replacement (a resume); at the end it kill -9s all of them. Then a fresh reader checks:

- **lost**: acknowledged keys the store does not return (must be 0);
- **unreadable**: damaged lines readers skip (a kill mid-write in the appended layout; 0 with batches);
- **counted twice**: keys ``records()`` returns more than once (must be 0), beside the raw
  **copies** of a key stored twice, which readers collapse to the last stored;
- appends and records per second over the run.

    python benchmarks/store_concurrency.py                                # 16 writers, 20 s, both layouts
    python benchmarks/store_concurrency.py --writers 4 --seconds 3 --json  # the test's smoke run
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from dgbench.results.record import new_record
from dgbench.results.store import DamagedLineWarning, ResultStore

PROTOCOL = "stress"
STAMP = {"versions": {"dgbench": "bench"}, "git_commit": None, "started_at": "2026-01-01T00:00:00+00:00"}


def stress_record(k: int, writer: int, pad: int) -> dict[str, Any]:
    """The record of key-space item ``k``: its identity and metric depend on ``k`` only."""
    return new_record(task="classification", protocol=PROTOCOL, dataset="d", model=f"m{k}", shift="origin",
                      metrics={"top1_err": float(k % 97)}, writer=writer, pad="p" * pad, **STAMP)


def writer(root: str, layout: str, ident: int, keys: int, pad: int, acks: str) -> None:
    """Child process: plan from the stored keys, 'compute', append, acknowledge; until killed."""
    rng = random.Random(ident)
    store = ResultStore(root, batches=layout == "batches")
    ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while True:
        done = store.completed_keys(PROTOCOL)
        recs = [stress_record(k, ident, rng.randrange(pad)) for k in rng.sample(range(keys), 3)]
        todo = [r for r in recs if r["key"] not in done]
        time.sleep(rng.uniform(0, 0.01))  # the computation: other writers may store the same keys meanwhile
        if todo:
            store.append(todo)
            os.write(ack, "".join(r["key"] + "\n" for r in todo).encode())
            os.fsync(ack)


def _acknowledged(folder: Path) -> set[str]:
    keys: set[str] = set()
    for path in folder.glob("*.ack"):
        data = path.read_bytes()
        keys |= {k.decode() for k in data[: data.rfind(b"\n") + 1].split(b"\n") if k}  # a torn last ack is not one
    return keys


def _start(ctx: Any, root: Path, layout: str, ident: int, args: argparse.Namespace) -> Any:
    proc = ctx.Process(target=writer, args=(str(root), layout, ident, args.keys, args.pad,
                                            str(root.parent / "acks" / f"{ident}.ack")), daemon=True)
    proc.start()
    return proc


def run_layout(layout: str, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """Run the writers on a fresh store of ``layout``, kill them at random, and check what is left."""
    root, acks = base / layout / "results", base / layout / "acks"
    acks.mkdir(parents=True)
    ctx = mp.get_context("spawn")
    rng = random.Random(args.seed)
    procs = [_start(ctx, root, layout, i, args) for i in range(args.writers)]
    started, kills, next_id = time.monotonic(), 0, args.writers
    while time.monotonic() - started < args.seconds:
        time.sleep(rng.expovariate(1 / args.kill_every))
        victim = rng.randrange(len(procs))
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].join()
        procs[victim], next_id, kills = _start(ctx, root, layout, next_id, args), next_id + 1, kills + 1
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    elapsed = time.monotonic() - started
    return {"layout": layout, **check_store(root, _acknowledged(acks)), "writers": args.writers,
            "processes": next_id, "kills": kills + len(procs), "seconds": round(elapsed, 1)}


def check_store(root: Path, acknowledged: set[str]) -> dict[str, Any]:
    """What a fresh reader finds in ``root``, against the keys writers had acknowledged."""
    store = ResultStore(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        records = store.records(PROTOCOL)
        read_s = time.perf_counter() - t0
        copies = store.records(PROTOCOL, copies=True)
    keys = [r["key"] for r in records]
    stored = store.completed_keys(PROTOCOL)
    return {
        "acknowledged": len(acknowledged), "stored_keys": len(stored),
        "lost": len(acknowledged - stored),
        "unreadable": sum(issubclass(w.category, DamagedLineWarning) for w in caught),
        "counted_twice": len(keys) - len(set(keys)),
        "copies_collapsed": len(copies) - len(records),
        "wrong_metric": sum(r["metrics"]["top1_err"] != float(int(r["model"][1:]) % 97) for r in records),
        "leftover_tmp": sum(1 for _ in root.rglob(".tmp-*")),
        "read_all_s": round(read_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--kill-every", type=float, default=0.25, help="mean seconds between kills")
    ap.add_argument("--keys", type=int, default=2000, help="size of the shared key space")
    ap.add_argument("--pad", type=int, default=200_000, help="largest record padding, bytes")
    ap.add_argument("--layout", choices=("appended", "batches", "both"), default="both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object per layout")
    args = ap.parse_args()
    layouts = ("appended", "batches") if args.layout == "both" else (args.layout,)
    with tempfile.TemporaryDirectory(prefix="dgbench-store-") as tmp:
        for layout in layouts:
            res = run_layout(layout, args, Path(tmp))
            if args.json:
                print(json.dumps(res), flush=True)
                continue
            print(f"{layout}: {res['writers']} writers ({res['processes']} processes, {res['kills']} kill -9) for "
                  f"{res['seconds']} s: {res['acknowledged']} keys acknowledged, {res['stored_keys']} stored; "
                  f"lost {res['lost']}, unreadable {res['unreadable']}, counted twice {res['counted_twice']}, "
                  f"{res['copies_collapsed']} racing copies collapsed, wrong metric {res['wrong_metric']}, "
                  f"{res['leftover_tmp']} temporary files left; reading all took {res['read_all_s']} s", flush=True)


if __name__ == "__main__":
    main()

"""The results store: atomic appends under concurrency, damaged lines, resume by key, frames."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
import warnings
from pathlib import Path

import pytest

from dgbench.results.frame import load_results, records_to_frame
from dgbench.results.record import IDENTITY_FIELDS, new_record, record_key
from dgbench.results.store import DamagedLineWarning, ResultStore

from results_fixtures import STAMP, appearance, cross, write_forever, write_many


def _damaged(store: ResultStore) -> tuple[list[dict], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = store.records()
    return recs, [str(w.message) for w in caught if issubclass(w.category, DamagedLineWarning)]


def test_append_and_read_back(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    recs = [appearance("resnet50", "origin", 24.0, 7.0),
            cross("m", "a", "b", {"miou": 30.0, "pixel_acc": 70.0}, {"miou": 60.0, "pixel_acc": 90.0})]
    store.append(recs)
    assert sorted(p.name for p in store.files()) == ["appearance.jsonl", "cross-domain.jsonl"]
    assert store.records() == recs  # protocol files listed in name order
    assert store.find(recs[0]["key"]) == recs[0]
    assert store.find("nope") is None


def test_parallel_appends_never_interleave(tmp_path: Path) -> None:
    workers, per_worker, payload = 4, 15, 100_000
    ctx = mp.get_context("spawn")  # a clean child: no inherited locks or threads
    with ctx.Pool(workers) as pool:
        jobs = [pool.apply_async(write_many, (str(tmp_path), w, per_worker, payload)) for w in range(workers)]
        assert [j.get(timeout=120) for j in jobs] == [per_worker] * workers
    lines = (tmp_path / "appearance.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""  # every record ends its own line
    parsed = [json.loads(line) for line in lines[:-1]]  # each line is one whole record
    assert len(parsed) == workers * per_worker
    assert {(r["model"], r["shift"]) for r in parsed} == {
        (f"w{w}", f"s{i}") for w in range(workers) for i in range(per_worker)}
    assert all(len(r["pad"]) == payload for r in parsed)


def test_damaged_line_is_reported_with_file_and_line_and_the_rest_kept(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    a = appearance("resnet50", "origin", 24.0, 7.0)
    b = appearance("resnet50_ibn_a", "origin", 22.0, 6.0)
    store.append([a])
    with open(store.path("appearance"), "a") as f:
        f.write('{"key": "broken", "metrics": {"top1\n')  # a torn line, newline and all
        f.write("[1, 2]\n")  # valid JSON, but not a record
    store.append([b])
    recs, damaged = _damaged(store)
    assert recs == [a, b]
    assert len(damaged) == 2
    assert f"{store.path('appearance')}:2:" in damaged[0]
    assert f"{store.path('appearance')}:3:" in damaged[1]


def test_torn_last_line_damages_only_itself(tmp_path: Path) -> None:
    # What a writer killed mid-write leaves: a last line without its newline.
    store = ResultStore(tmp_path)
    a, b = appearance("m", "origin", 1.0, 1.0), appearance("m", "rgb+50", 2.0, 2.0, (1.0, 1.0))
    store.append([a])
    with open(store.path("appearance"), "ab") as f:
        f.write(json.dumps(b).encode()[:40])
    store.append([b])  # starts on a fresh line
    recs, damaged = _damaged(store)
    assert recs == [a, b]
    assert len(damaged) == 1 and ":2:" in damaged[0]


def test_killed_writer_leaves_at_most_one_damaged_line(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=write_forever, args=(str(tmp_path),), daemon=True)
    proc.start()
    path = tmp_path / "appearance.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 1_000_000):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert path.exists(), "the writer never wrote"
    store = ResultStore(tmp_path)
    after = appearance("after", "origin", 1.0, 1.0)
    store.append([after])
    recs, damaged = _damaged(store)
    assert len(damaged) <= 1
    assert recs[-1] == after and len(recs) >= 5


def test_completed_keys_resume_semantics(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    planned = [appearance("m", s, 1.0, 1.0, (1.0, 1.0)) for s in ("origin", "rgb+50", "r+50", "std-x1.5")]
    store.append(planned[:2])  # the run was interrupted after two shifts
    done = store.completed_keys("appearance")
    todo = [r for r in planned if r["key"] not in done]
    assert [r["shift"] for r in todo] == ["r+50", "std-x1.5"]
    assert store.completed_keys("cross-domain") == set()


def test_key_hashes_the_work_not_the_execution() -> None:
    base = dict(task="classification", protocol="appearance", model="m", shift="origin", **STAMP)
    a = new_record(**base, device="cpu", batch_size=64, duration_s=3.0)
    b = new_record(**base, device="cuda", batch_size=256, duration_s=1.0, world_size=8)
    c = new_record(**base, seed=1)
    assert a["key"] == b["key"] != c["key"]
    assert a["key"] == record_key(a) and "seed" in IDENTITY_FIELDS


def test_records_frame_flattens_metrics_and_keeps_the_latest_copy(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    old = appearance("m", "rgb+50", 30.0, 9.0, (24.0, 7.0))
    new = dict(old, metrics={"top1_err": 31.0, "top5_err": 9.5})  # re-run with --force, same key
    seg = cross("d", "a", "b", {"miou": 30.0, "pixel_acc": 70.0, "per_class_iou": {"road": 80.0}},
                {"miou": 60.0, "pixel_acc": 90.0, "per_class_iou": {"road": 90.0}})
    store.append([old, seg, new])
    frame = load_results(tmp_path)
    assert len(frame) == 2
    row = frame[frame["kind"] == "appearance"].iloc[0]
    assert row["metrics.top1_err"] == 31.0 and row["drop.top1_err"] == pytest.approx(6.0)
    seg_row = frame[frame["kind"] == "cross-domain"].iloc[0]
    assert seg_row["drop.miou"] == -30.0  # the record's raw drop: cross minus in-domain
    assert "metrics.per_class_iou" not in frame.columns  # non-scalar metrics stay in the record
    assert list(load_results(tmp_path, "cross-domain")["model"]) == ["d"]
    assert records_to_frame([]).empty

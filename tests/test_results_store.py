"""The results store: atomic appends under concurrency, damaged lines, resume by key, frames."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
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


def test_damaged_line_prints_as_one_clean_line_in_the_cli(tmp_path: Path) -> None:
    # Python's own warning format adds "DamagedLineWarning" and the source line that warned.
    store = ResultStore(tmp_path)
    store.append([appearance("resnet50", "origin", 24.0, 7.0)])
    with open(store.path("appearance"), "a") as f:
        f.write('{"key": "broken", "metr\n')
    store.append([appearance("resnet50", "rgb+50", 25.0, 8.0, (24.0, 7.0))])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-m", "dgbench", "table", "--protocol", "appearance", "--results",
                          str(tmp_path), "--format", "csv"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"warning: {store.path('appearance')}:2: damaged result line skipped")
    assert "delete or repair that line" in lines[0] and "Warning" not in lines[0]


def test_a_key_stored_twice_counts_once_and_the_last_stored_wins(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    first = appearance("m", "origin", 1.0, 1.0)
    other = appearance("m", "rgb+50", 2.0, 2.0, (1.0, 1.0))
    again = dict(first, metrics={"top1_err": 1.5, "top5_err": 1.0}, duration_s=9.0)  # same key
    store.append([first, other])
    store.append([again])
    assert store.records() == [other, again]  # one per key, at the place of its last copy
    assert store.records(copies=True) == [first, other, again]
    assert store.find(first["key"]) == again and store.completed_keys() == {first["key"], other["key"]}
    assert len(load_results(tmp_path)) == 2


def test_batches_layout_is_read_with_the_appended_file_and_wins_by_write_order(tmp_path: Path) -> None:
    old = appearance("m", "origin", 1.0, 1.0)
    ResultStore(tmp_path).append([old])  # appended before the store turned to batches
    store = ResultStore(tmp_path, batches=True)
    new = dict(old, metrics={"top1_err": 3.0, "top5_err": 1.0})
    other = appearance("n", "origin", 2.0, 2.0)
    store.append([new])
    ResultStore(tmp_path).append([other])  # any later writer of this folder writes batches too
    assert store.path("appearance").read_text().count("\n") == 1
    batches = sorted((tmp_path / "batches" / "appearance").iterdir())
    assert len(batches) == 2 and not any(p.name.startswith(".") for p in batches)
    assert store.records() == [new, other] and store.find(old["key"]) == new
    assert [p.name for p in store.files()] == ["appearance.jsonl"]
    assert ResultStore(tmp_path).records() == [new, other]  # a fresh reader agrees


def test_lookups_read_each_file_once_then_only_what_was_appended(tmp_path: Path, monkeypatch) -> None:
    store = ResultStore(tmp_path)
    recs = [appearance(f"m{i}", "origin", 1.0, 1.0) for i in range(50)]
    store.append(recs)
    opened: list[str] = []
    real_open = open

    def counting_open(file, *a, **kw):  # type: ignore[no-untyped-def]
        if str(file).endswith(".jsonl"):
            opened.append(str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr("builtins.open", counting_open)
    assert all(store.find(r["key"], "appearance") == r for r in recs)
    assert len(store.completed_keys("appearance")) == 50
    assert len(opened) == 1  # not one scan per key
    late = appearance("late", "origin", 1.0, 1.0)
    store.append([late])
    opened.clear()
    assert store.find(late["key"], "appearance") == late and store.find(recs[0]["key"]) == recs[0]
    assert len(opened) == 1  # only the new bytes, once


def test_a_line_being_written_is_not_read_until_whole(tmp_path: Path) -> None:
    from filelock import FileLock

    store = ResultStore(tmp_path)
    a, b = appearance("m", "origin", 1.0, 1.0), appearance("n", "origin", 1.0, 1.0)
    store.append([a])
    text = json.dumps(b, sort_keys=True, separators=(",", ":"))
    with FileLock(str(store.path("appearance")) + ".lock"):  # a writer mid-append holds the lock
        with open(store.path("appearance"), "a") as f:
            f.write(text[:30])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing reported as damaged: it is only unfinished
            assert store.records() == [a]
        with open(store.path("appearance"), "a") as f:
            f.write(text[30:] + "\n")
    assert store.records() == [a, b]


def test_killed_and_concurrent_writers_lose_nothing_and_count_each_key_once() -> None:
    # Writers that plan from the stored keys and append later (as protocols do) race on a small
    # key space, are killed with SIGKILL at random and replaced (resumed); see the benchmark.
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "store_concurrency.py"
    env = dict(os.environ, PYTHONPATH=str(script.parents[1]))
    out = subprocess.run([sys.executable, str(script), "--writers", "6", "--seconds", "4", "--keys", "40",
                          "--pad", "100000", "--kill-every", "0.3", "--json"],
                         capture_output=True, text=True, env=env, timeout=400)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["layout"] for r in results] == ["appended", "batches"]
    for r in results:
        assert r["acknowledged"] > 0 and r["kills"] >= 6
        assert r["lost"] == 0 and r["counted_twice"] == 0 and r["wrong_metric"] == 0, r
    assert results[1]["unreadable"] == 0  # write-then-rename: a kill leaves nothing half-written
    assert sum(r["copies_collapsed"] for r in results) > 0  # racing writers did store keys twice


def test_a_store_rewritten_by_hand_is_read_again(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    a, b = appearance("m", "origin", 1.0, 1.0), appearance("n", "origin", 1.0, 1.0)
    store.append([a, b])
    assert store.completed_keys() == {a["key"], b["key"]}
    store.path("appearance").write_text("")  # emptied (same inode, smaller)
    assert store.records() == [] and store.find(a["key"]) is None
    tmp = tmp_path / "x.tmp"
    tmp.write_text(json.dumps(b) + "\n")
    os.replace(tmp, store.path("appearance"))  # replaced by another file
    assert store.records() == [b]

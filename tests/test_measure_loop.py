"""The one skip-or-compute loop (dgbench.protocols.measure) that every protocol kind runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dgbench.protocols.measure import MeasureLoop
from dgbench.results.store import ResultStore

PROTOCOL = "toy"


def rec(key: str, value: float = 1.0) -> dict[str, Any]:
    return {"key": key, "protocol": PROTOCOL, "metrics": {"m": value}}


class Counter:
    """A compute function that records what it was asked for."""

    def __init__(self, value: float = 1.0) -> None:
        self.calls: list[tuple[list[str], set[str]]] = []
        self.value = value

    def __call__(self, missing: list[str], stored: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append((list(missing), set(stored)))
        return [rec(k, self.value) for k in missing]


def test_a_unit_computes_only_what_is_missing_and_stores_it_once(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append([rec("b", 0.5)])
    loop = MeasureLoop(store, PROTOCOL)
    compute = Counter()
    records, new = loop.unit(["a", "b", "c"], compute)
    assert [r["key"] for r in records] == ["a", "b", "c"] and new == 2
    assert records[1]["metrics"]["m"] == 0.5  # the stored record, reused
    assert compute.calls == [(["a", "c"], {"b"})]  # the stored ones are handed to compute (drops)
    assert [r["key"] for r in store.records(PROTOCOL)] == ["b", "a", "c"]  # one append, no repeat of b
    assert (loop.computed, loop.reused) == (2, 1)
    # The same unit again, in this run or the next: nothing computed, nothing appended.
    for again in (loop, MeasureLoop(store, PROTOCOL)):
        records, new = again.unit(["a", "b", "c"], compute)
        assert new == 0 and len(compute.calls) == 1 and len(store.records(PROTOCOL)) == 3


def test_force_recomputes_and_other_ranks_do_not_write(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append([rec("a")])
    forced = Counter(2.0)
    records, new = MeasureLoop(store, PROTOCOL, force=True).unit(["a"], forced)
    # appended as a second line; readers count one result per key, the last stored
    assert new == 1 and records[0]["metrics"]["m"] == 2.0 and len(store.records(PROTOCOL, copies=True)) == 2
    assert [r["metrics"]["m"] for r in store.records(PROTOCOL)] == [2.0]
    reader = Counter()
    records, new = MeasureLoop(store, PROTOCOL, force=True, write=False).unit(["x"], reader)
    assert new == 1 and len(store.records(PROTOCOL, copies=True)) == 2  # a non-main rank computes its shard only


def test_an_interrupted_unit_stores_nothing(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)

    def dies(missing: list[str], stored: dict[str, Any]) -> list[dict[str, Any]]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MeasureLoop(store, PROTOCOL).unit(["a", "b"], dies)
    assert store.records(PROTOCOL) == []


def test_a_record_whose_key_is_not_the_skip_key_is_an_error(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    with pytest.raises(RuntimeError, match="no computed record has key a"):
        MeasureLoop(store, PROTOCOL).unit(["a"], lambda missing, stored: [rec("other")])
    assert store.records(PROTOCOL) == []


def test_without_a_store_everything_is_computed() -> None:
    loop = MeasureLoop(None, PROTOCOL)
    records, new = loop.unit(["a", "b"], Counter())
    assert new == 2 and [r["key"] for r in records] == ["a", "b"]


def test_every_protocol_kind_runs_the_one_loop() -> None:
    """No kind keeps its own copy of skip-or-compute (completed keys, find, append)."""
    root = Path(__file__).resolve().parents[1] / "dgbench" / "protocols"
    for name in ("appearance", "cross_domain", "divergence", "finetune"):
        text = (root / f"{name}.py").read_text()
        assert "MeasureLoop" in text, name
        for call in ("completed_keys(", "store.find(", "store.append("):
            assert call not in text, (name, call)

"""Skip or compute: the one measure loop that every protocol kind runs against the results store.

A kind turns what it will measure into record keys (:func:`dgbench.results.record.record_key` of
the identity fields) grouped into *units*, the records computed together and stored together
(appearance: a model's shifts, one engine pass; cross-domain: a model's 2x2; divergence: a model's
layers of one domain pair; finetune: one (model, seed, fraction)). For each unit
:meth:`MeasureLoop.unit`:

1. looks its keys up among the store's completed keys (none with ``force``);
2. when every key is stored, returns the stored records, computing nothing;
3. otherwise calls ``compute(missing, stored)`` for the records of the missing keys (the stored
   ones are passed in: a drop may be measured from a stored reference);
4. appends the new records to the store in one append (when ``write``: rank 0), only once the
   unit is complete, so an interrupted unit stores nothing and a rerun computes it again;
5. returns the unit's records in key order, and counts what it computed and reused.

Only the store's public API is used (``completed_keys``, ``find``, ``append``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..results.store import ResultStore

Record = dict[str, Any]
# compute(missing keys, stored records by key) -> the records of (at least) the missing keys
Compute = Callable[[list[str], dict[str, Record]], Iterable[Record]]


@dataclass
class MeasureLoop:
    """One run's skip-or-compute against ``store``'s file of ``protocol`` (see the module docstring)."""

    store: ResultStore | None  # None: nothing read, nothing written
    protocol: str  # the store file the records go to (a protocol's name)
    force: bool = False  # recompute stored keys
    write: bool = True  # append new records (rank 0); other ranks compute their shards only
    computed: int = 0
    reused: int = 0
    _done: set[str] | None = field(default=None, repr=False)
    _found: dict[str, Record] = field(default_factory=dict, repr=False)

    def completed(self) -> set[str]:
        """The keys the store held when the run started, plus those this loop stored since."""
        if self._done is None:
            reads = self.store is not None and not self.force
            self._done = self.store.completed_keys(self.protocol) if reads else set()  # type: ignore[union-attr]
        return self._done

    def stored(self, keys: Iterable[str]) -> dict[str, Record]:
        """The stored records among ``keys`` (looked up once per key and run)."""
        done = self.completed()
        for k in keys:
            if k in done and k not in self._found and self.store is not None:
                rec = self.store.find(k, self.protocol)
                if rec is not None:
                    self._found[k] = rec
        return {k: self._found[k] for k in keys if k in self._found}

    def unit(self, keys: Sequence[str], compute: Compute) -> tuple[list[Record], int]:
        """The records of one unit in key order (stored ones reused, the rest computed and
        stored), and how many of them were computed now."""
        stored = self.stored(keys)
        missing = [k for k in keys if k not in stored]
        new: dict[str, Record] = {}
        if missing:
            new = {r["key"]: r for r in compute(missing, stored)}
            lost = [k for k in missing if k not in new]
            if lost:
                raise RuntimeError(f"{self.protocol}: no computed record has key {lost[0]}: the key a result is "
                                   "skipped by and the key of its record disagree")
            if self.store is not None and self.write:
                self.store.append(new[k] for k in missing)  # only now: the unit is complete
                self.completed().update(missing)
                self._found.update({k: new[k] for k in missing})
        self.computed += len(missing)
        self.reused += len(keys) - len(missing)
        return [stored[k] if k in stored else new[k] for k in keys], len(missing)

"""Model selection for leave-one-domain-out results, as functions over stored runs (DomainBed's three).

A *run* is one training: ``model``, ``model_kwargs``, ``algorithm``, ``trial``, ``hparams_seed``,
``held_out`` (one test domain, or two for the leave-one-domain-out method's extra runs) and
``evaluations``: per evaluated step ``{"step", "acc": {domain: {"in": %, "out": %}}}``. For a test
domain ``t`` and a trial, each method scores candidates (an hparam set, and for two of them a step)
and picks the best score's candidate; the reported number is that candidate's accuracy on ``t``'s
"in" split (80 % of ``t``; its other 20 % is the oracle's validation):

* :func:`training_domain_validation`: over (hparam set, step) of the runs holding out ``t``
  alone, the mean accuracy on the training domains' "out" splits;
* :func:`leave_one_domain_out`: over (hparam set, step), the mean over the other domains ``v``
  of the accuracy on ``v``'s "in" split of the run holding out ``{t, v}`` (needs every such run
  at that step);
* :func:`test_domain_oracle`: over hparam sets, the *last* step's accuracy on ``t``'s "out"
  split (no early stopping, as DomainBed).

Ties go to the lower hparam set, then the earlier step. :func:`selected` applies a method to
every (model, algorithm, test domain, trial) group.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Run = Mapping[str, Any]
Pick = dict[str, Any]
GROUP = ("model", "model_kwargs", "algorithm")


def _mean(xs: list[float | None]) -> float | None:
    return None if not xs or any(x is None for x in xs) else sum(xs) / len(xs)  # type: ignore[arg-type]


def _best(cands: Iterable[tuple[float, int, int, float]]) -> Pick | None:
    """``(val, hparams_seed, step, test)`` candidates -> the pick (max val; ties: lower set, earlier step)."""
    ranked = sorted(cands, key=lambda c: (-c[0], c[1], c[2]))
    if not ranked:
        return None
    val, h, step, test = ranked[0]
    return {"val_acc": val, "hparams_seed": h, "step": step, "test_acc": test}


def _singles(runs: Iterable[Run], test: str) -> list[Run]:
    return [r for r in runs if tuple(r["held_out"]) == (test,)]


def training_domain_validation(runs: Iterable[Run], test: str) -> Pick | None:
    cands = []
    for r in _singles(runs, test):
        for ev in r["evaluations"]:
            val = _mean([a["out"] for d, a in ev["acc"].items() if d != test])
            if val is not None:
                cands.append((val, r["hparams_seed"], ev["step"], ev["acc"][test]["in"]))
    return _best(cands)


def test_domain_oracle(runs: Iterable[Run], test: str) -> Pick | None:
    cands = []
    for r in _singles(runs, test):
        last = max(r["evaluations"], key=lambda ev: ev["step"])
        cands.append((last["acc"][test]["out"], r["hparams_seed"], last["step"], last["acc"][test]["in"]))
    return _best(cands)


def leave_one_domain_out(runs: Iterable[Run], test: str) -> Pick | None:
    runs = list(runs)
    pairs: dict[tuple[int, str], Run] = {}
    for r in runs:
        held = tuple(r["held_out"])
        if len(held) == 2 and test in held:
            pairs[(r["hparams_seed"], next(d for d in held if d != test))] = r
    cands = []
    for r in _singles(runs, test):
        others = [d for d in r["evaluations"][0]["acc"] if d != test]
        for ev in r["evaluations"]:
            vals = []
            for v in others:
                pr = pairs.get((r["hparams_seed"], v))
                at = next((e for e in pr["evaluations"] if e["step"] == ev["step"]), None) if pr else None
                vals.append(at["acc"][v]["in"] if at else None)
            val = _mean(vals)
            if val is not None:
                cands.append((val, r["hparams_seed"], ev["step"], ev["acc"][test]["in"]))
    return _best(cands)


METHODS: dict[str, Callable[[Iterable[Run], str], Pick | None]] = {
    "training-domain validation": training_domain_validation,
    "leave-one-domain-out": leave_one_domain_out,
    "test-domain oracle": test_domain_oracle,
}


def selected(runs: Iterable[Run], method: str) -> list[Pick]:
    """One pick per (model, model_kwargs, algorithm, test domain, trial) that the method can score."""
    fn = METHODS[method]
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault((*(r[k] for k in GROUP), r["trial"]), []).append(r)
    picks = []
    for (model, kw, algo, trial), rs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        tests = sorted({r["held_out"][0] for r in rs if len(r["held_out"]) == 1})
        for t in tests:
            pick = fn(rs, t)
            if pick is not None:
                picks.append({"model": model, "model_kwargs": kw, "algorithm": algo, "test_domain": t,
                              "trial": trial, "method": method, **pick})
    return picks

"""Error consistency (Geirhos et al. 2020) between models, condition by condition.

Two models with the same error can fail on the same images or on different ones. Cohen's kappa
of their per-image correctness says which, beyond what their accuracies alone imply: 1 when
they get exactly the same images wrong, 0 when the overlap is what chance gives, below 0 when
they fail on different images. Read from the stored per-image outcomes (:mod:`.outcomes`).
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from ..metrics import stats
from .conditions import ordered_conditions
from .paired import latest_per_condition, outcomes_of, pick_dataset, records_of

CAPTION = ("Cohen's kappa of two models' per-image correctness (error consistency, Geirhos et al. 2020): "
           "1 = the same images wrong, 0 = no more overlap than their accuracies imply; – where undefined "
           "(a model all right or all wrong)")
COLUMNS = ["model_a", "model_b", "condition", "kappa", "n"]


def consistency(protocol: str = "appearance", *, results: str | os.PathLike | None = None, dataset: str | None = None,
                models: Iterable[str] | None = None, metric: str = "top1") -> pd.DataFrame:
    """One row per pair of models per condition: ``model_a, model_b, condition, kappa, n``."""
    from ..config import results_dir
    from .store import ResultStore

    k = {"top1": 1, "top5": 5}.get(metric)
    if k is None:
        raise DgbenchError(f"--metric {metric!r}: error consistency reads top1 or top5")
    store = ResultStore(results_dir(results))
    names = list(models) if models else sorted({r["model"] for r in store.iter_records(protocol) if r.get("model")})
    by_model = {m: recs for m in names if (recs := records_of(store, protocol, m, dataset))}
    if len(by_model) < 2:
        raise DgbenchError(f"error consistency needs two models with stored {protocol} results in {store.root} "
                           f"(found {', '.join(by_model) or 'none'}); run: dgbench run --model A,B --protocol {protocol}")
    ds = pick_dataset(by_model, dataset, protocol)
    per = {m: latest_per_condition([r for r in recs if r["dataset"] == ds]) for m, recs in by_model.items()}
    rows = []
    for a, b in itertools.combinations(per, 2):
        for cond in ordered_conditions(protocol, set(per[a]) & set(per[b])):
            rows.append(_row(store.root, protocol, per[a][cond], per[b][cond], k))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(root: Any, protocol: str, rec_a: dict[str, Any], rec_b: dict[str, Any], k: int) -> dict[str, Any]:
    (oa, order_a), (ob, order_b) = outcomes_of(root, protocol, rec_a), outcomes_of(root, protocol, rec_b)
    if order_a != order_b:
        raise DgbenchError(f"{rec_a['shift']}: the per-image outcomes of {rec_a['model']} and {rec_b['model']} list "
                           "different images; rerun both with --force")
    both = oa.evaluated & ob.evaluated
    kappa = stats.error_consistency(oa.correct[k][both], ob.correct[k][both])
    return dict(model_a=rec_a["model"], model_b=rec_b["model"], condition=rec_a["shift"], kappa=kappa, n=int(both.sum()))


def as_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows ``A · B``, one column per condition (in the frame's order), kappa in the cells."""
    if frame.empty:
        return pd.DataFrame()
    conds = list(dict.fromkeys(frame["condition"]))
    pairs = frame.assign(pair=frame["model_a"] + " · " + frame["model_b"])
    wide = pairs.pivot(index="pair", columns="condition", values="kappa")
    return wide.reindex(index=list(dict.fromkeys(pairs["pair"])), columns=conds)

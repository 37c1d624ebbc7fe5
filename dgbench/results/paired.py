"""``dgbench compare A B``: is B's error really different from A's, condition by condition?

Both models were evaluated on the same images, so the comparison is paired: from the stored
per-image outcomes (:mod:`.outcomes`), per condition, both errors, the difference B - A with a
paired bootstrap 95 % interval over images, the exact McNemar p-value on the images where they
disagree, that p Holm-adjusted over the conditions compared, and the two discordant counts.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import DgbenchError
from ..metrics import stats
from . import outcomes
from .conditions import ordered_conditions

N_BOOT = 10_000


class MissingRecordsError(DgbenchError):
    """A model has no stored record of the protocol; ``models`` are the ones to run."""

    def __init__(self, msg: str, models: list[str]):
        super().__init__(msg)
        self.models = models


@dataclass(frozen=True)
class PairedRow:
    """One condition of a comparison; errors and differences in percent (points)."""

    condition: str
    n: int
    err_a: float
    err_b: float
    diff: float  # err_b - err_a
    diff_lo: float
    diff_hi: float
    p: float  # exact McNemar
    p_holm: float
    a_only_right: int  # images A gets right and B misses
    b_only_right: int


@dataclass(frozen=True)
class Comparison:
    model_a: str
    model_b: str
    protocol: str
    dataset: str
    metric: str  # "top1" | "top5"
    rows: list[PairedRow]

    def as_dicts(self) -> list[dict[str, Any]]:
        head = dict(model_a=self.model_a, model_b=self.model_b, protocol=self.protocol, dataset=self.dataset,
                    metric=self.metric)
        return [{**head, **asdict(r)} for r in self.rows]

    def footer(self) -> str:
        return (f"{self.metric} error % · B - A in points with a paired bootstrap 95 % interval over images "
                f"({N_BOOT:,} resamples) · p: exact McNemar on the images the two disagree on, Holm-adjusted "
                f"over the {len(self.rows)} conditions · A✓B✗ / B✓A✗: images one gets right and the other misses")


def records_of(store: Any, protocol: str, model: str, dataset: str | None) -> list[dict[str, Any]]:
    recs = [r for r in outcomes.latest_by_key(store.iter_records(protocol))
            if r.get("model") == model and r.get("task") == "classification" and r.get("shift")]
    return [r for r in recs if dataset is None or r.get("dataset") == dataset]


def pick_dataset(by_model: dict[str, list[dict[str, Any]]], dataset: str | None, protocol: str) -> str:
    if dataset is not None:
        return dataset
    common = set.intersection(*({r["dataset"] for r in recs} for recs in by_model.values()))
    if len(common) == 1:
        return common.pop()
    if not common:
        raise DgbenchError(f"{' and '.join(by_model)} have no {protocol} results on a common dataset; "
                           "run both on one (`dgbench run --model A,B --protocol ...`)")
    raise DgbenchError(f"{' and '.join(by_model)} have {protocol} results on several datasets "
                       f"({', '.join(sorted(common))}); pass --dataset")


def _same_images(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(f) == b.get(f) for f in ("dataset_fingerprint", "limit", "subset"))


def latest_per_condition(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["shift"]: r for r in recs}  # store order: the latest record of a condition wins


def outcomes_of(root: Any, protocol: str, rec: dict[str, Any]) -> tuple[Any, str]:
    got = outcomes.read(root, protocol, rec["key"])
    if got is None:
        raise DgbenchError(
            f"{rec['model']} / {rec['shift']}: the stored {protocol} record has no per-image outcomes (made with "
            f"--no-outcomes or by an older dgbench); recompute it: dgbench run --model {rec['model']} "
            f"--protocol {protocol} --dataset {rec['dataset']} --force")
    return got


def compare(model_a: str, model_b: str, protocol: str = "appearance", *, results: str | os.PathLike | None = None,
            dataset: str | None = None, metric: str = "top1", conditions: Iterable[str] | None = None) -> Comparison:
    """Paired comparison of two models' stored results of ``protocol`` (see the module docstring)."""
    from ..config import results_dir
    from .store import ResultStore

    k = {"top1": 1, "top5": 5}.get(metric)
    if k is None:
        raise DgbenchError(f"--metric {metric!r}: compare reads top1 or top5")
    store = ResultStore(results_dir(results))
    by_model = {m: records_of(store, protocol, m, dataset) for m in (model_a, model_b)}
    missing = [m for m, recs in by_model.items() if not recs]
    if missing:
        where = f" on {dataset}" if dataset else ""
        raise MissingRecordsError(f"no stored {protocol} results{where} for {', '.join(missing)} in {store.root}; "
                                  f"run: dgbench run --model {','.join(missing)} --protocol {protocol}"
                                  + (f" --dataset {dataset}" if dataset else ""), missing)
    ds = pick_dataset(by_model, dataset, protocol)
    a, b = (latest_per_condition([r for r in by_model[m] if r["dataset"] == ds]) for m in (model_a, model_b))
    wanted = list(conditions) if conditions else ordered_conditions(protocol, set(a) & set(b))
    rows = [_row(store.root, protocol, a[c], b[c], k) for c in wanted if c in a and c in b and _same_images(a[c], b[c])]
    if not rows:
        raise DgbenchError(f"{model_a} and {model_b} share no {protocol} condition measured on the same images of {ds}")
    adjusted = stats.holm([r.p for r in rows])
    rows = [PairedRow(**{**asdict(r), "p_holm": p}) for r, p in zip(rows, adjusted)]
    return Comparison(model_a, model_b, protocol, ds, metric, rows)


def _row(root: Any, protocol: str, rec_a: dict[str, Any], rec_b: dict[str, Any], k: int) -> PairedRow:
    (oa, order_a), (ob, order_b) = outcomes_of(root, protocol, rec_a), outcomes_of(root, protocol, rec_b)
    if order_a != order_b or len(oa) != len(ob):
        raise DgbenchError(f"{rec_a['shift']}: the per-image outcomes of {rec_a['model']} and {rec_b['model']} list "
                           "different images (another sample order); rerun both with --force")
    both = oa.evaluated & ob.evaluated  # an image skipped as corrupt in either run is left out
    ca, cb = oa.correct[k][both], ob.correct[k][both]
    d = stats.paired_bootstrap_diff(ca, cb, n_boot=N_BOOT)
    err = lambda c: 100.0 * (1.0 - c.mean()) if c.size else float("nan")  # noqa: E731
    return PairedRow(condition=rec_a["shift"], n=int(both.sum()), err_a=err(ca), err_b=err(cb), diff=100 * d.diff,
                     diff_lo=100 * d.lo, diff_hi=100 * d.hi, p=stats.mcnemar_exact(d.b_only_wrong, d.a_only_wrong),
                     p_holm=float("nan"), a_only_right=d.b_only_wrong, b_only_right=d.a_only_wrong)


def fmt_p(p: float) -> str:
    """A p-value in a table cell: 3 significant digits, ``<1e-4`` below that."""
    if np.isnan(p):
        return "–"
    return "<1e-4" if p < 1e-4 else f"{p:.3g}"

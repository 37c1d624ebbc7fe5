"""The cross-domain 2x2 of one model, and what a task adapter provides to make it.

:func:`cross_domain` evaluates the model trained on each domain of a pair on both domains and
records the four cells (drops of the cross cells from the in-domain ones); a :class:`Task` says,
for one task (classification in :mod:`.cross_domain`, segmentation in
:mod:`.cross_domain_segmentation`), which models a request means, how to load and evaluate them.
The protocol kind (:mod:`.cross_domain`) picks the pair and the task; the adapters import this
module, never the kind, so the kind can find them without an import circle.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import DgbenchError
from ..results import outcomes
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..runtime import Runtime
from .base import RunRequest
from .measure import MeasureLoop

if TYPE_CHECKING:
    from ..specs import PairSpec

PROTOCOL = "cross-domain"


@dataclass
class Evaluation:
    """What a task's evaluate function returns for one (model, test set)."""

    metrics: dict[str, float]  # scalar percentages, e.g. {"top1_acc": .., "top1_err": ..} or {"miou": ..}
    num_samples: int
    duration_s: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)  # further record fields (per_class_iou...)
    outcomes: Any = None  # per-image outcomes kept beside the record (segmentation: SegImageCounts)


@dataclass
class Domain:
    """One side of the pair.

    Args:
        name: the domain's name (recorded as ``train_domain`` / ``test_domain``).
        load_model: returns the model trained on this domain (called once per run: its
            ``weights_sha256`` is part of every record's key, so it is needed even when the
            cells are already stored).
        test_set: this domain's test dataset, or a function of the model returning it (so the
            preprocessing can follow the model's pretrained configuration).
    """

    name: str
    load_model: Callable[[], nn.Module]
    test_set: Any


EvaluateFn = Callable[[nn.Module, Any], Evaluation]


def _dataset_of(domain: Domain, model: nn.Module) -> Any:
    return domain.test_set(model) if callable(domain.test_set) and not hasattr(domain.test_set, "__getitem__") else domain.test_set


def _call(obj: Any, name: str) -> Any:
    fn = getattr(obj, name, None)
    return fn() if callable(fn) else None


def cross_domain(
    model_name: str,
    domains: Sequence[Domain],
    evaluate: EvaluateFn,
    *,
    task: str,
    store: ResultStore | None = None,
    force: bool = False,
    record_fields: dict[str, Any] | None = None,
    preprocessing: Callable[[nn.Module, Any], dict[str, Any]] | None = None,
    write: bool = True,
    loop: MeasureLoop | None = None,
) -> list[dict[str, Any]]:
    """The 2x2 for one model: records in the order A->A, A->B, B->B, B->A.

    A cell already in ``store`` under the same record key (same model, weights, test data,
    preprocessing, train/test domains) is reused unless ``force``; new records are appended to
    ``store`` (when ``write``: rank 0) once all four cells are known, so an interrupted run writes
    nothing partial. ``record_fields`` adds fields to every record (identity fields included).
    ``loop``: the run's :class:`MeasureLoop` (it then gives the store and counts over models).
    """
    if len(domains) != 2 or domains[0].name == domains[1].name:
        raise DgbenchError(f"the cross-domain protocol needs two different domains, got {[d.name for d in domains]}")
    loop = loop or MeasureLoop(store, PROTOCOL, force, write)
    models, cells = _cells(model_name, domains, task, record_fields, preprocessing)

    def compute(missing: list[str], stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        measured, kept = {}, {}
        for key in missing:
            train, _, base, ds = cells[key]
            ev = evaluate(models[train], ds)
            measured[key] = dict(base, metrics=dict(ev.metrics), num_samples=ev.num_samples, duration_s=ev.duration_s,
                                 device=ev.device, dataset_info=_call(ds, "describe"), **ev.extra)
            if ev.outcomes is not None:
                kept[key] = (ev.outcomes, ds)
        if loop.store is not None and loop.write:
            from .style_cache import sample_order  # the image-shift machinery, only once outcomes are written

            # per-image outcomes first (each file atomic), the loop appends the records after:
            # a record never exists without its outcomes
            for key, (out, ds) in kept.items():
                outcomes.write(loop.store.root, PROTOCOL, key, out, sample_order(ds))
        return [new_record(kind="cross-domain", **_with_drop(measured[k], {**stored, **measured}, cells)) for k in missing]

    return loop.unit(list(cells), compute)[0]


def _cells(model_name: str, domains: Sequence[Domain], task: str, record_fields: dict[str, Any] | None,
           preprocessing: Callable[[nn.Module, Any], dict[str, Any]] | None) -> tuple[dict[str, nn.Module], dict]:
    """Each domain's model (loaded once) and the four cells: record key -> (train, test, identity, test set)."""
    models: dict[str, nn.Module] = {}
    cells: dict[str, tuple[str, str, dict[str, Any], Any]] = {}
    for train, test in [(train, test) for train in domains for test in (train, *[d for d in domains if d is not train])]:
        if train.name not in models:
            models[train.name] = train.load_model()
            models[train.name].train_domain = train.name  # evaluate functions may name outputs by it
        model = models[train.name]
        ds = _dataset_of(test, model)
        base: dict[str, Any] = dict(
            weights_source=getattr(model, "weights_source", None), weights_tag=getattr(model, "weights_tag", None),
            task=task, protocol=PROTOCOL, model=model_name,
            model_kwargs=getattr(model, "variant_kwargs", {}) or {},
            weights_sha256=getattr(model, "weights_sha256", None),
            dataset=getattr(ds, "name", test.name), dataset_fingerprint=_call(ds, "fingerprint"),
            train_domain=train.name, test_domain=test.name, shift=None, shift_spec=None,
            preprocessing=preprocessing(model, ds) if preprocessing else None,
        )
        base.update(record_fields or {})
        cells[record_key(base)] = (train.name, test.name, base, ds)
    return models, cells


def _with_drop(rec: dict[str, Any], known: dict[str, dict[str, Any]], cells: dict[str, Any]) -> dict[str, Any]:
    """A cross cell ``A->B`` with ``reference = A`` and its drop from the in-domain cell ``A->A``."""
    train, test = rec["train_domain"], rec["test_domain"]
    if train == test:
        return rec
    in_domain = next(k for k, (a, b, _, _) in cells.items() if a == b == train)
    ref = known[in_domain]["metrics"]
    return dict(rec, reference=train,
                drop={k: v - ref[k] for k, v in rec["metrics"].items() if ref.get(k) is not None and v is not None})


@dataclass(frozen=True)
class Task:
    """What the cross-domain runner needs to know about a task (see the module docstring)."""

    models: Callable[[RunRequest, PairSpec], list[Any]]
    builtin_weights: Callable[[Any, str], Callable[[], nn.Module]]
    load: Callable[[Any, str, RunRequest], nn.Module]
    test_set: Callable[[str, nn.Module, PairSpec, RunRequest], Any]
    evaluate: Callable[[RunRequest, Runtime], EvaluateFn]
    preprocessing: Callable[[RunRequest], Callable[[nn.Module, Any], dict[str, Any]]]
    options: tuple[str, ...] = ()  # RunRequest.options the task reads
    # False: a test set does not depend on the model, so it is built (and its layout checked)
    # once, before any weights are loaded.
    test_set_needs_model: bool = True

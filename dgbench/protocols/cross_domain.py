"""The cross-domain protocol: a model trained on each of two domains, evaluated on both.

The shape of the paper's Table 6 (Cityscapes <-> GTA5): four results per model, ``A->A``, ``A->B``,
``B->B``, ``B->A``. The pairs are data (``[pairs.NAME]`` in ``transforms/pairs.toml`` or a file on
``$DGBENCH_TRANSFORMS``): two registered datasets, a task, and where the weights come from
(shipped checkpoints, or ``--checkpoint-a``/``--checkpoint-b``). One runner, :func:`cross_domain`,
makes the 2x2 for either task; a task adapter (:data:`TASKS`) says which models a request means,
how to load the one trained on a domain, its test set, and how to evaluate it.

Records (one per cell, ``protocol="cross-domain"``) have ``train_domain``, ``test_domain``, scalar
``metrics`` (segmentation: mIoU and pixel accuracy; per-class IoU in its own ``per_class_iou``
field), and for a cross cell ``A->B`` ``reference = "A"`` and ``drop`` = cross minus in-domain for
every metric, ``m(A->B) - m(A->A)`` (an accuracy or mIoU drop is negative, an error drop positive;
the results tables print it as a degradation). In-domain cells have ``reference=None``, ``drop={}``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..config import results_dir
from ..errors import DgbenchError, SpecError
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..runtime import Runtime
from .base import Protocol, RunRequest, RunSummary, reject_options
from .measure import MeasureLoop
from .specs import PairSpec, registry

PROTOCOL = "cross-domain"


@dataclass
class Evaluation:
    """What a task's evaluate function returns for one (model, test set)."""

    metrics: dict[str, float]  # scalar percentages, e.g. {"top1_acc": .., "top1_err": ..} or {"miou": ..}
    num_samples: int
    duration_s: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)  # further record fields (per_class_iou...)


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
    models: dict[str, nn.Module] = {}
    cells: dict[str, tuple[str, str, dict[str, Any], Any]] = {}  # key -> (train, test, identity, test set)
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

    def compute(missing: list[str], stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        measured = {}
        for key in missing:
            train, _, base, ds = cells[key]
            ev = evaluate(models[train], ds)
            measured[key] = dict(base, metrics=dict(ev.metrics), num_samples=ev.num_samples, duration_s=ev.duration_s,
                                 device=ev.device, dataset_info=_call(ds, "describe"), **ev.extra)
        return [new_record(kind="cross-domain", **_with_drop(measured[k], {**stored, **measured}, cells)) for k in missing]

    return loop.unit(list(cells), compute)[0]


def _with_drop(rec: dict[str, Any], known: dict[str, dict[str, Any]], cells: dict[str, Any]) -> dict[str, Any]:
    """A cross cell ``A->B`` with ``reference = A`` and its drop from the in-domain cell ``A->A``."""
    train, test = rec["train_domain"], rec["test_domain"]
    if train == test:
        return rec
    in_domain = next(k for k, (a, b, _, _) in cells.items() if a == b == train)
    ref = known[in_domain]["metrics"]
    return dict(rec, reference=train,
                drop={k: v - ref[k] for k, v in rec["metrics"].items() if ref.get(k) is not None and v is not None})


# ----------------------------------------------------------------------------- classification
def classification_evaluate(device: str = "cpu", batch_size: int = 256, progress: bool = False,
                            runtime: Runtime | None = None, precision: str = "fp32") -> EvaluateFn:
    """An evaluate function for classifiers: the engine's clean ("origin") pass, top-1 in percent."""

    def evaluate(model: nn.Module, ds: Any) -> Evaluation:
        from ..engine import EngineConfig
        from ..engine import evaluate as engine_evaluate
        from .specs import get_shift

        cfg = EngineConfig(device=device, batch_size=batch_size, workers=0, progress=progress, precision=precision,
                           description=f"{getattr(model, 'dgbench_name', 'model')} on {getattr(ds, 'name', '?')}")
        start = time.perf_counter()
        res = engine_evaluate(model, ds, [get_shift("origin")], config=cfg, runtime=runtime)
        counts = res.counts["origin"]
        acc = 100.0 * counts.correct[1] / counts.n if counts.n else float("nan")
        return Evaluation(
            metrics={"top1_acc": acc, "top1_err": 100.0 - acc},
            num_samples=res.num_samples, duration_s=time.perf_counter() - start, device=res.device,
            extra={"batch_size": batch_size, "skipped_corrupt": res.skipped_corrupt},
        )

    return evaluate


# ----------------------------------------------------------------------------- tasks
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


def _classification_models(req: RunRequest, pair: PairSpec) -> list[Any]:
    from .model_select import pick_small, resolve_models

    if pair.weights == "builtin":
        from ..builtin.names import SMALL_MODELS, small_name_for

        return pick_small(req.model, SMALL_MODELS, small_name_for, f"checkpoints shipped for the {pair.name} pair")
    return resolve_models(req.model, pretrained=False)


def _classification_builtin(name: Any, domain: str) -> Callable[[], nn.Module]:
    from ..builtin.checkpoints import load_builtin

    return lambda: load_builtin(name, domain)


def _classification_load(name: Any, path: str, req: RunRequest) -> nn.Module:
    from .model_select import build_model

    return build_model(name, checkpoint=path, kwargs=req.model_kwargs).eval()


def _classification_test_set(domain: str, model: nn.Module, pair: PairSpec, req: RunRequest) -> Any:
    from ..data.base import Preprocess, build_dataset
    from .appearance import select

    ds = build_dataset(domain, _root(req, domain), split=pair.split, preprocess=Preprocess.from_cfg(model.pretrained_cfg))
    return select(ds, req.limit, None)


def _classification_preprocessing(req: RunRequest) -> Callable[[nn.Module, Any], dict[str, Any]]:
    def info(model: nn.Module, ds: Any) -> dict[str, Any]:
        cfg = model.pretrained_cfg  # type: ignore[attr-defined]
        prep = getattr(ds, "preprocess", None) or getattr(getattr(ds, "base", None), "preprocess", None)
        return {**prep.to_dict(), "mean": list(cfg.mean), "std": list(cfg.std)}

    return info


def _classification_evaluate(req: RunRequest, rt: Runtime) -> EvaluateFn:
    return classification_evaluate(device=str(rt.device), batch_size=req.batch_size, progress=req.progress,
                                   runtime=rt, precision=rt.precision)


def _tagged(model: nn.Module, path: str) -> nn.Module:
    model.weights_source = path  # type: ignore[assignment]
    return model


def _root(req: RunRequest, domain: str) -> Any:
    return (req.options.get("roots") or {}).get(domain)


CLASSIFICATION = Task(_classification_models, _classification_builtin, _classification_load,
                      _classification_test_set, _classification_evaluate, _classification_preprocessing)


def task_adapter(task: str) -> Task:
    if task == "classification":
        return CLASSIFICATION
    from .segmentation import SEGMENTATION

    return SEGMENTATION


# ----------------------------------------------------------------------------- the protocol kind
CHECKPOINT_OPTIONS = ("checkpoint_a", "checkpoint_b")


class CrossDomainProtocol(Protocol):
    """``kind = "cross-domain"``: ``pairs`` names the ``[pairs.NAME]`` a run may pick with ``--dataset``."""

    kind = "cross-domain"
    fields = {"pairs": list}
    required = ("pairs",)

    @classmethod
    def validate(cls, spec: Any, reg: Any) -> None:
        for p in spec.params["pairs"]:
            if p not in reg.pairs:
                raise SpecError(f"{spec.source}: protocols.{spec.name}.pairs: unknown pair {p!r} "
                                f"(known: {', '.join(sorted(reg.pairs)) or 'none'})")

    def datasets(self) -> list[str]:
        return list(self.spec.params["pairs"])

    def conditions(self) -> list[str]:
        reg = registry()
        return [" <-> ".join(reg.pairs[p].domains) for p in self.spec.params["pairs"]]

    def pairs_line(self) -> str:
        reg = registry()
        return "; ".join(f"{p} ({' <-> '.join(reg.pairs[p].domains)})" for p in self.spec.params["pairs"])

    def pick_pair(self, req: RunRequest) -> PairSpec:
        """``--dataset`` names a pair (or an alias); without it, the first pair fitting the weights given."""
        reg = registry()
        mine = {n: p for n, p in reg.pair_names().items() if p in self.spec.params["pairs"]}
        if req.data is not None:
            raise DgbenchError(f"--data is an ImageNet folder, which has no second domain for the {self.name} protocol; "
                               f"pass --dataset, one of: {self.pairs_line()}")
        if req.dataset is None:
            wants_ckpt = any(req.options.get(k) for k in CHECKPOINT_OPTIONS)
            first = next(p for p in self.spec.params["pairs"] if (reg.pairs[p].weights == "checkpoints") == wants_ckpt)
            if not wants_ckpt:
                req.say(f"no --dataset: using the built-in {first} pair (pairs: {self.pairs_line()})")
            return reg.pairs[first]
        if req.dataset not in mine:
            from ..errors import UnknownNameError

            err = UnknownNameError("cross-domain dataset", req.dataset, mine)
            raise DgbenchError(f"{err} The {self.name} protocol runs on: {self.pairs_line()}")
        return reg.pairs[mine[req.dataset]]

    def domains(self, name: Any, pair: PairSpec, task: Task, req: RunRequest, sets: dict[str, Any] | None) -> list[Domain]:
        if pair.weights == "builtin":
            loaders = [task.builtin_weights(name, d) for d in pair.domains]
        else:
            paths = [str(req.options[k]) for k in CHECKPOINT_OPTIONS]
            loaders = [(lambda p=p: _tagged(task.load(name, p, req), p)) for p in paths]

        def test_set(domain: str) -> Any:
            if sets is not None:
                return sets[domain]
            return lambda m: task.test_set(domain, m, pair, req)

        return [Domain(d, load, test_set(d)) for d, load in zip(pair.domains, loaders)]

    def check_request(self, req: RunRequest, pair: PairSpec, task: Task) -> None:
        allowed = (*task.options, "roots") + (CHECKPOINT_OPTIONS if pair.weights == "checkpoints" else ())
        reject_options(req, self.name, allowed, pair=pair.name)
        unused = [f for f, given in (("--shifts", req.shifts), ("--subset", req.subset), ("--checkpoint", req.checkpoint),
                                     ("--skip-corrupt", req.skip_corrupt)) if given]
        if unused:
            raise DgbenchError(f"{', '.join(unused)}: not used by the {self.name} protocol")
        if pair.weights == "checkpoints":
            missing = [f"--{k.replace('_', '-')} (trained on {d})" for k, d in zip(CHECKPOINT_OPTIONS, pair.domains)
                       if not req.options.get(k)]
            if missing:
                raise DgbenchError(f"the {pair.name} pair needs {' and '.join(missing)}: the models trained on each "
                                   "domain (`dgbench train` makes them)")
            for k in CHECKPOINT_OPTIONS:
                from pathlib import Path

                if not Path(req.options[k]).is_file():
                    raise DgbenchError(f"--{k.replace('_', '-')} {req.options[k]}: no such file")

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        from .rerun import cross_domain_request

        return cross_domain_request(self.name, rows)

    def run(self, req: RunRequest, rt: Runtime) -> RunSummary:
        pair = self.pick_pair(req)
        task = task_adapter(pair.task)
        self.check_request(req, pair, task)
        names = task.models(req, pair)
        if pair.weights == "checkpoints" and len(names) != 1:
            raise DgbenchError(f"the {pair.name} pair evaluates one model (the one --checkpoint-a/-b hold); "
                               f"got --model {req.model!r}")
        store = ResultStore(results_dir(req.results)) if req.store else None
        loop = MeasureLoop(store, PROTOCOL, req.force, rt.is_main)
        evaluate = task.evaluate(req, rt)
        fields = {"precision": rt.precision, "limit": req.limit}
        if pair.weights == "builtin":
            fields["weights_source"] = "builtin"
        t0 = time.perf_counter()
        records: list[dict[str, Any]] = []
        sets = None if task.test_set_needs_model else {d: task.test_set(d, None, pair, req) for d in pair.domains}
        for name in names:
            mname = name if isinstance(name, str) else getattr(name, "dgbench_name", type(name).__name__)
            records += cross_domain(mname, self.domains(name, pair, task, req, sets), evaluate, task=pair.task,
                                    preprocessing=task.preprocessing(req), record_fields=fields, loop=loop)
        return RunSummary(records, loop.computed, loop.reused, time.perf_counter() - t0,
                          dataset=pair.name, kind=self.kind)


def run_cross_domain(model: Any = "ibn_a", dataset: str = "digits", *, results: Any = None, store: bool = True,
                     force: bool = False, device: str = "cpu", batch_size: int = 256, progress: bool = False,
                     **options: Any) -> list[dict[str, Any]]:
    """The cross-domain protocol from Python: ``dataset`` names a pair; returns 4 records per model."""
    from .base import run

    req = RunRequest(model=model, dataset=dataset, results=results, store=store, force=force, device=device,
                     batch_size=batch_size, progress=progress, options=options)
    return run(PROTOCOL, req).records

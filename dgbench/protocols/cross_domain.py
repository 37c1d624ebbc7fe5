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
from collections.abc import Callable
from typing import Any

from torch import nn

from ..config import results_dir
from ..errors import DgbenchError, SpecError
from ..results.store import ResultStore
from ..runtime import Runtime
from .base import Protocol, RunRequest, RunSummary, reject_options
from .cross_domain_cells import PROTOCOL, Domain, Evaluation, EvaluateFn, Task, cross_domain
from .measure import MeasureLoop
from .specs import PairSpec, registry

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
    from .cross_domain_segmentation import SEGMENTATION

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


def run_builtin_scenes(model: Any = "ibn_b", *, results: Any = None, store: bool = True, force: bool = False,
                       device: str = "cpu", save_predictions: Any = None,
                       progress: bool = False) -> list[dict[str, Any]]:
    """Cross-domain segmentation on the built-in digit-scenes pair: 4 records per model."""
    return run_cross_domain(model, "digit-scenes", results=results, store=store, force=force, device=str(device),
                            progress=progress, save_predictions=save_predictions)

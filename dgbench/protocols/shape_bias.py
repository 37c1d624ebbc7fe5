"""The ``shape-bias`` protocol kind: cue-conflict images (Geirhos et al. 2019), one record per
(model, dataset).

Every image of a cue-conflict set has a shape class and a texture class; the model's decision is
made among the dataset's categories (its category map: ImageNet's 1000 classes to model-vs-human's
16 on ``cue-conflict``, each digit to itself on the built-in ``digit-cue-conflict``) and counted
as a shape, texture or other decision (:mod:`dgbench.metrics.shape_bias`). The record keeps the
integer counts (``decisions``) and, as percentages, shape bias, cue accuracy and the shape and
texture match rates.

TOML fields: ``datasets``, the cue-conflict sets the protocol runs on; the first is the default
(without ``--dataset``; ``--data`` alone means ``cue-conflict``).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..config import results_dir
from ..data.base import Preprocess, build_dataset
from ..errors import DgbenchError, SpecError
from ..metrics.shape_bias import CategoryMap, DecisionCounts, count_decisions
from ..results.record import git_commit, new_record, record_key, versions
from ..results.store import ResultStore
from ..runtime import Runtime
from .base import Protocol, RunRequest, RunSummary, reject_options
from .identity import model_identity
from .measure import MeasureLoop

KIND = "shape-bias"
OFFICIAL = "cue-conflict"  # what --data alone points at


class ShapeBiasProtocol(Protocol):
    kind = KIND
    fields = {"datasets": list}
    required = ("datasets",)

    @classmethod
    def validate(cls, spec: Any, registry: Any) -> None:
        names = spec.params.get("datasets") or []
        if not names or not all(isinstance(n, str) and n for n in names):
            raise SpecError(f"{spec.source}: [protocols.{spec.name}] datasets: a non-empty list of dataset names")

    def datasets(self) -> Sequence[str]:
        return list(self.spec.params["datasets"])

    def conditions(self) -> Sequence[str]:
        return ["shape vs texture decisions"]

    def run(self, request: RunRequest, runtime: Runtime) -> RunSummary:
        reject_options(request, self.name)
        for flag, value in (("--shifts", request.shifts), ("--subset", request.subset),
                            ("--skip-corrupt", request.skip_corrupt)):
            if value:
                raise DgbenchError(f"{flag}: not used by the {self.name} protocol (every cue-conflict image "
                                   "counts; --limit takes the first N)")
        return _Run(self, request, runtime).run()

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        """A published shape-bias leaderboard's models, on its dataset."""
        return RunRequest(model=sorted(set(rows["model"])), dataset=dataset)


def decide_all(model: nn.Module, ds: Any, cmap: CategoryMap, rt: Runtime, batch_size: int,
               workers: int) -> list[int]:
    """The category decision for every image of ``ds``, in dataset order."""
    from ..engine.classification import normalize_batch

    model = model.eval().to(rt.device)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    out: list[int] = []
    with torch.inference_mode():
        for images, _ in loader:
            x = normalize_batch(images.to(rt.device).float(), model)
            with rt.autocast():
                logits = model(x)
            if logits.ndim != 2 or logits.shape[1] != cmap.num_outputs:
                raise DgbenchError(f"{getattr(model, 'dgbench_name', type(model).__name__)}: {logits.shape[1]} "
                                   f"outputs; {ds.name}'s category map reads {cmap.num_outputs}")
            out += cmap.decide(logits.float().cpu()).tolist()
    return out


class _Unfit(Exception):
    """A model whose number of outputs the dataset's category map does not read."""


class _Run:
    def __init__(self, proto: ShapeBiasProtocol, request: RunRequest, runtime: Runtime):
        self.proto, self.req, self.rt = proto, request, runtime
        known = proto.datasets()
        self.ds_name = request.dataset or (OFFICIAL if request.data else known[0])
        if self.ds_name not in known:
            raise DgbenchError(f"--dataset {self.ds_name}: the {proto.name} protocol runs on {', '.join(known)}")
        store = ResultStore(results_dir(request.results)) if request.store else None
        self.loop = MeasureLoop(store, proto.name, request.force, runtime.is_main)
        self.datasets: dict[Preprocess, Any] = {}
        self.stamp = dict(versions=versions(), git_commit=git_commit())

    def run(self) -> RunSummary:
        t0 = time.perf_counter()
        probe = self._dataset(None)  # fails here, once, when the data are missing
        out: list[dict[str, Any]] = []
        images = 0
        names = self._models(probe)
        unfit: list[str] = []
        for name in names:
            try:
                rec, computed = self._model(name)
            except _Unfit as exc:
                if len(names) == 1:
                    raise DgbenchError(str(exc)) from None
                unfit.append(str(name))
                continue
            out.append(rec)
            images += computed
        if unfit:  # `--model all` on ImageNet's set: the small digit nets have 10 outputs
            self.req.say(f"skipped {len(unfit)} model(s) whose outputs {self.ds_name}'s category map cannot read: "
                         + ", ".join(unfit[:4]) + (", ..." if len(unfit) > 4 else ""))
        return RunSummary(out, self.loop.computed, self.loop.reused, time.perf_counter() - t0, images,
                          self.ds_name, KIND)

    def _dataset(self, prep: Preprocess | None) -> Any:
        if prep not in self.datasets:
            root = None if self.ds_name != OFFICIAL else self.req.data
            ds = build_dataset(self.ds_name, root, preprocess=prep)
            self.datasets[prep] = _first(ds, self.req.limit)
        return self.datasets[prep]

    def _models(self, ds: Any) -> list[Any]:
        """``--model`` on this dataset: on a built-in set, the small models of its source domain."""
        from ..builtin.names import SMALL_MODELS, builtin_model_name
        from ..models.external import is_external
        from .model_select import resolve_models, split_names

        wanted = split_names(self.req.model)
        trained_on = getattr(ds, "trained_on", None)
        if trained_on and not isinstance(wanted, nn.Module):
            names = [wanted] if isinstance(wanted, str) else list(wanted)
            if names == ["all"]:
                return list(SMALL_MODELS)
            wanted = [n if isinstance(n, nn.Module) or is_external(n) else builtin_model_name(n, trained_on)
                      for n in names]
        found = list(dict.fromkeys(resolve_models(wanted, pretrained=self.req.pretrained)))
        if not found:
            raise DgbenchError(f"no model matches {self.req.model!r}")
        return found

    def _identity(self, m: nn.Module, name: Any, prep: Preprocess, ds: Any) -> tuple[dict, dict]:
        req = self.req
        base = dict(model_identity(m, name, req, self.rt.precision, prep, ds, protocol=self.proto.name,
                                   dataset=self.ds_name, subset=None), kind=KIND)
        extra = dict(dataset_info=ds.describe(), categories=list(ds.category_names), device=str(self.rt.device),
                     batch_size=req.batch_size, world_size=self.rt.world_size, **self.stamp)
        return base, extra

    def _model(self, name: Any) -> tuple[dict[str, Any], int]:
        """One model's record (stored, or measured now) and the images it decoded."""
        from .model_select import build_model

        req = self.req
        m = build_model(name, pretrained=req.pretrained, checkpoint=req.checkpoint, seed=req.seed,
                        kwargs=req.model_kwargs)
        outputs = getattr(m.pretrained_cfg, "num_classes", None)  # type: ignore[attr-defined]
        if outputs is not None and outputs != self.datasets[None].num_outputs:
            raise _Unfit(f"{name}: {outputs} outputs; {self.ds_name}'s category map reads "
                         f"{self.datasets[None].num_outputs}")
        prep = Preprocess.from_cfg(m.pretrained_cfg)  # type: ignore[attr-defined]
        ds = self._dataset(prep)
        base, extra = self._identity(m, name, prep, ds)
        recs, new = self.loop.unit([record_key(base)], lambda missing, stored: [self._measure(m, ds, base, extra)])
        if not new:
            req.say(f"{base['model']} · {self.ds_name}: already stored (use --force to recompute)")
        return recs[0], len(ds) if new else 0

    def _measure(self, m: nn.Module, ds: Any, base: dict, extra: dict) -> dict[str, Any]:
        t0 = time.perf_counter()
        cmap = CategoryMap(tuple(ds.category_names), tuple(ds.category_members), ds.num_outputs)
        workers = 0 if getattr(ds, "trained_on", None) else (self.req.workers or 0)  # in memory: no workers
        decisions = decide_all(m, ds, cmap, self.rt, self.req.batch_size, workers)
        counts = count_decisions(decisions, ds.shape_labels, ds.texture_labels)
        return new_record(**base, **extra, metrics=percentages(counts), decisions=counts.as_dict(),
                          num_samples=len(ds), duration_s=time.perf_counter() - t0)


def percentages(c: DecisionCounts) -> dict[str, float]:
    """The record's metrics, in percent (NaN-free: a ratio without a denominator is left out)."""
    out = {}
    if c.shape + c.texture:
        out["shape_bias"] = 100.0 * c.shape_bias()
    if c.conflict:
        out.update(cue_acc=100.0 * c.cue_accuracy(), shape_match=100.0 * c.shape / c.conflict,
                   texture_match=100.0 * c.texture / c.conflict)
    return out


class _First(torch.utils.data.Dataset):
    """The first ``limit`` images of a cue-conflict set (``--limit``), labels kept in step."""

    def __init__(self, base: Any, limit: int):
        self.base, self.n = base, min(limit, len(base))
        self.name, self.num_outputs = base.name, base.num_outputs
        self.category_names, self.category_members = base.category_names, base.category_members
        self.trained_on = getattr(base, "trained_on", None)
        self.shape_labels, self.texture_labels = base.shape_labels[:self.n], base.texture_labels[:self.n]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[i]

    def fingerprint(self) -> str:
        return self.base.fingerprint()

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "images_selected": self.n}


def _first(ds: Any, limit: int | None) -> Any:
    return _First(ds, limit) if limit else ds

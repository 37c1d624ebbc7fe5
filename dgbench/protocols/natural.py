"""The ``natural-shifts`` protocol kind: models on a clean test set and on natural shifts of it.

For each model and each test set of the clean dataset's group (``transforms/natural.toml``),
one engine pass and one record: ``dataset`` = the clean dataset (the leaderboard's name),
``shift`` = the test set, ``reference`` = the clean test set (drops are from its error). A test
set of fewer classes (ImageNet-R/-A, ObjectNet) is scored with the model's logits restricted to
its classes (:mod:`dgbench.metrics.class_subsets`). Effective robustness is computed from the
records by :mod:`dgbench.results.natural`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..config import results_dir
from ..data.base import Preprocess, build_dataset
from ..engine import EngineConfig, evaluate
from ..errors import DgbenchError, SpecError
from ..metrics.class_subsets import ClassMapModel
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..runtime import Runtime
from ..shifts import ShiftSpec
from .base import Protocol, RunRequest, RunSummary, reject_options
from .identity import model_identity
from .measure import MeasureLoop
from .model_select import build_model, model_cfg, refuse_other_classes, scored_classes

CLEAN = ShiftSpec("origin", "origin")  # each test set is run as it is


class NaturalShiftsProtocol(Protocol):
    kind = "natural-shifts"
    fields = {"sets": dict}
    required = ("sets",)

    @classmethod
    def validate(cls, spec: Any, registry: Any) -> None:
        for clean, group in spec.params["sets"].items():
            where = f"{spec.source}: protocols.{spec.name}.sets.{clean}"
            if not isinstance(group, dict) or not isinstance(group.get("shifted"), list) or not group["shifted"]:
                raise SpecError(f"{where}: needs `shifted = [test set, ...]`")
            extra = set(group) - {"shifted", "optional", "description"}
            if extra:
                raise SpecError(f"{where}: unknown field(s) {', '.join(sorted(extra))} "
                                "(known: shifted, optional, description)")

    def sets(self) -> dict[str, dict[str, Any]]:
        return dict(self.spec.params["sets"])

    def datasets(self) -> Sequence[str]:
        return list(self.sets())

    def conditions(self) -> Sequence[str]:
        return [f"{clean}: {s}" for clean, g in self.sets().items() for s in g["shifted"]]

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        """A published leaderboard's models on its clean dataset (every test set is re-measured)."""
        return RunRequest(model=sorted(set(rows["model"])), dataset=dataset)

    def run(self, request: RunRequest, runtime: Runtime) -> RunSummary:
        from .appearance import choose_dataset

        reject_options(request, self.name)
        if request.shifts:
            raise DgbenchError(f"--shifts: not used by the {self.name} protocol (its test sets are listed in "
                               f"{self.spec.source})")
        ds_name, root, note = choose_dataset(request.dataset, request.data)
        if note:
            request.say(note)
        if ds_name not in self.sets():
            raise DgbenchError(f"protocol {self.name!r} has no test sets for dataset {ds_name!r} (it has: "
                               f"{', '.join(self.sets())}); pass --dataset one of them")
        return _Run(self, request, runtime, ds_name, root).run()


class _Run:
    def __init__(self, proto: NaturalShiftsProtocol, req: RunRequest, rt: Runtime, clean: str, root: str | None):
        self.proto, self.req, self.rt, self.clean, self.root = proto, req, rt, clean, root
        group = proto.sets()[clean]
        self.test_sets = [clean, *group["shifted"]]
        self.optional = bool(group.get("optional", False))
        store = ResultStore(results_dir(req.results)) if req.store else None
        self.loop = MeasureLoop(store, proto.name, req.force, rt.is_main)
        self.datasets: dict[tuple[Preprocess, str], Any] = {}
        self.missing: dict[str, str] = {}  # optional test sets without data -> why
        self.images = 0

    def run(self) -> RunSummary:
        from .appearance import model_names

        t0 = time.perf_counter()
        names = model_names(self.req, self.clean)
        out: list[dict[str, Any]] = []
        skipped: list[str] = []
        for name in names:
            recs = self.model(name, several=len(names) > 1)
            if recs is None:
                skipped.append(str(name))
            out += recs or []
        for ts, why in self.missing.items():
            self.req.say(f"{ts} skipped (its data are not here): {why}")
        if skipped:
            self.req.say(f"skipped {len(skipped)} model(s) whose classifier does not fit {self.clean}: "
                         + ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else ""))
        return RunSummary(out, self.loop.computed, self.loop.reused, time.perf_counter() - t0, self.images,
                          self.clean, self.proto.kind)

    def dataset(self, name: str, prep: Preprocess) -> Any:
        """A test set for ``prep`` (None: an optional set whose data are not here)."""
        from .appearance import select

        if name in self.missing:
            return None
        if (prep, name) not in self.datasets:
            try:
                ds = build_dataset(name, self.root if name == self.clean else None, preprocess=prep)
            except DgbenchError as exc:
                if not self.optional or name == self.clean:
                    raise
                self.missing[name] = str(exc).splitlines()[0]
                return None
            self.datasets[(prep, name)] = select(ds, self.req.limit, self.req.subset)
        return self.datasets[(prep, name)]

    def model(self, name: Any, several: bool) -> list[dict[str, Any]] | None:
        """Every test set's record of one model (stored ones reused); None: the model does not fit."""
        req = self.req
        cfg = model_cfg(name)
        m = None
        if cfg is None:  # an outside model: build it to learn its preprocessing
            m = build_model(name, pretrained=req.pretrained, checkpoint=req.checkpoint, seed=req.seed,
                            kwargs=req.model_kwargs)
            cfg = m.pretrained_cfg  # type: ignore[attr-defined]
        prep = Preprocess.from_cfg(cfg)
        clean_ds = self.dataset(self.clean, prep)
        scored = scored_classes(name, m, cfg, req.model_kwargs)
        if scored != clean_ds.num_classes and not isinstance(name, nn.Module):
            if several:
                return None
            raise refuse_other_classes(name, scored, self.clean, clean_ds.num_classes)
        m = m or build_model(name, pretrained=req.pretrained, checkpoint=req.checkpoint, seed=req.seed,
                             kwargs=req.model_kwargs)
        out: list[dict[str, Any]] = []
        clean_metrics: dict[str, float] | None = None
        for ts in self.test_sets:
            ds = self.dataset(ts, prep)
            if ds is None:
                continue
            rec = self.measure(m, name, ts, ds, prep, clean_metrics)
            if ts == self.clean:
                clean_metrics = rec["metrics"]
            out.append(rec)
        return out

    def measure(self, m: nn.Module, name: Any, ts: str, ds: Any, prep: Preprocess,
                clean_metrics: dict[str, float] | None) -> dict[str, Any]:
        """One (model, test set) record: stored, or measured in one engine pass now."""
        req = self.req
        class_map = getattr(getattr(ds, "base", ds), "class_map", None)
        spec = {"test_set": ts, "classes": int(ds.num_classes),
                "scoring": "logits restricted to the set's classes (max over each class's ImageNet classes)"
                if class_map is not None else "all classes of the model"}
        base = dict(model_identity(m, name, req, self.rt.precision, prep, ds, protocol=self.proto.name,
                                   dataset=self.clean, subset=req.subset),
                    kind="natural-shifts", shift=ts, shift_spec=spec)
        key = record_key(base)

        def compute(missing: list[str], stored: dict[str, Any]) -> list[dict[str, Any]]:
            scored = ClassMapModel(m, class_map) if class_map is not None else m
            cfg = EngineConfig(device=str(self.rt.device), batch_size=req.batch_size, workers=req.workers,
                               precision=self.rt.precision, channels_last=req.channels_last,
                               skip_corrupt=req.skip_corrupt, progress=req.progress)
            res = evaluate(scored, ds, [CLEAN], config=cfg, runtime=self.rt)
            self.images += res.num_samples + res.skipped_corrupt
            metrics = res.counts[CLEAN.name].errors()
            is_ref = ts == self.clean
            drop = {} if is_ref or clean_metrics is None else {k: metrics[k] - clean_metrics[k] for k in metrics}
            return [new_record(**base, reference=None if is_ref else self.clean, metrics=metrics, drop=drop,
                               num_samples=res.num_samples, skipped_corrupt=res.skipped_corrupt,
                               skipped_files=res.skipped_files[:100],
                               dataset_info=ds.describe(), device=res.device, batch_size=req.batch_size,
                               world_size=res.world_size, duration_s=res.duration_s, images_per_s=res.images_per_s)]

        recs, new = self.loop.unit([key], compute)
        if not new:
            req.say(f"{base['model']} · {ts}: already stored (use --force to recompute)")
        return recs[0]

"""The ``divergence`` protocol kind: Section 4.3 / Fig. 5 of the IBN-Net paper as a measurement.

For each model and each domain pair of the dataset (pairs are data: see
:mod:`.divergence_pairs`), stream both domains through the model, keep per-probe float64 moments
of the per-channel spatial means (:mod:`dgbench.engine.feature_stats`), and record the channel-averaged
symmetric KL divergence (:mod:`dgbench.metrics.divergence`) at every probe (:mod:`dgbench.models.probes`):
one record per (model, pair, layer), appended to ``<results>/<protocol>.jsonl`` once the pair is
complete, so an interrupted run leaves no half pair and resumes where it stopped.

Passes are shared: a domain (dataset x shift x grouping) is streamed once per model, whichever
pairs use it; a content pair's grouped pass also yields its dataset's clean domain (the groups
merged), so on ImageNet the class halves and photo-vs-Monet cost two passes, not four.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import results_dir
from ..data.base import Preprocess, build_dataset
from ..engine.feature_stats import Branch, PassConfig, PassMoments, run_pass
from ..errors import DgbenchError
from ..metrics.divergence import Moments, layer_divergence, merge
from ..models.probes import Probe, find_probes
from ..results.record import git_commit, new_record, record_key, versions
from ..results.store import ResultStore
from ..runtime import Runtime
from ..shifts import ShiftSpec
from .base import Protocol, RunRequest, RunSummary, reject_options
from .divergence_pairs import DomainPair, check_names, class_halves, parse_pairs
from .identity import model_identity
from .measure import MeasureLoop

ORIGIN = ShiftSpec("origin", "origin")


class DivergenceProtocol(Protocol):
    kind = "divergence"
    fields = {"pairs": dict}
    required = ("pairs",)

    @classmethod
    def validate(cls, spec: Any, registry: Any) -> None:
        check_names(parse_pairs(spec.params, spec.source, spec.name), registry.shifts, spec.source, spec.name)

    def pairs(self) -> dict[str, list[DomainPair]]:
        return parse_pairs(self.spec.params, self.spec.source, self.name)

    def datasets(self) -> Sequence[str]:
        return list(self.pairs())

    def conditions(self) -> Sequence[str]:
        return [f"{ds}: {p.name}" for ds, ps in self.pairs().items() for p in ps]

    def run(self, request: RunRequest, runtime: Runtime) -> RunSummary:
        reject_options(request, self.name, allowed=("roots",))
        if request.skip_corrupt:
            raise DgbenchError(f"--skip-corrupt: not supported by the {self.name} protocol (a skipped image would "
                               "change one domain of a pair but not the other); remove the corrupt files")
        if request.shifts:
            raise DgbenchError(f"--shifts: not used by the {self.name} protocol (its domain pairs, shifts "
                               f"included, are defined in {self.spec.source})")
        return _Run(self, request, runtime).run()

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        """A published divergence leaderboard's models, on its dataset (every pair is re-measured)."""
        return RunRequest(model=sorted(set(rows["model"])), dataset=dataset)


# ----------------------------------------------------------------------------- one run
class _NoProbes(Exception):
    """A model of a several-model run that the analysis cannot probe (skipped with a note)."""


@dataclass
class _Domain:
    key: tuple[str, str, str]  # (dataset key, branch shift name, grouping)
    group: int = 0


class _Run:
    def __init__(self, proto: DivergenceProtocol, request: RunRequest, runtime: Runtime):
        from .appearance import choose_dataset

        self.proto, self.req, self.rt = proto, request, runtime
        self.ds_name, self.root, note = choose_dataset(request.dataset, request.data)
        if note:
            request.say(note)
        pairs = proto.pairs()
        if self.ds_name not in pairs:
            raise DgbenchError(f"protocol {proto.name!r} has no domain pairs for dataset {self.ds_name!r} "
                               f"(it has pairs for: {', '.join(pairs)}); pass --dataset one of them")
        self.pairs = pairs[self.ds_name]
        store = ResultStore(results_dir(request.results)) if request.store else None
        self.loop = MeasureLoop(store, proto.name, request.force, runtime.is_main)
        self.datasets: dict[tuple[Preprocess, str], Any] = {}
        self.skipped: set[str] = set()  # optional pairs without their data
        # Stamped once per run, not once per record (a record per layer: git would run 140 times).
        self.stamp = dict(versions=versions(), git_commit=git_commit())

    def run(self) -> RunSummary:
        t0 = time.perf_counter()
        out: list[dict[str, Any]] = []
        images = 0
        names = self._models()
        unprobed: list[str] = []
        for name in names:
            try:
                recs, n = self._model(name, several=len(names) > 1)
            except _NoProbes:
                unprobed.append(str(name))
                continue
            out += recs
            images += n
        if unprobed:
            self.req.say(f"skipped {len(unprobed)} model(s) that are not residual networks (no probes): "
                         + ", ".join(unprobed[:4]) + (", ..." if len(unprobed) > 4 else ""))
        return RunSummary(out, self.loop.computed, self.loop.reused, time.perf_counter() - t0, images, self.ds_name,
                          self.proto.kind)

    # -- models ------------------------------------------------------------------------------
    def _models(self) -> list[Any]:
        from ..models.external import is_external
        from ..builtin.names import SMALL_MODELS, builtin_model_name
        from .appearance import BUILTIN_OFFLINE
        from .model_select import resolve_models, split_names

        wanted = split_names(self.req.model)
        if self.ds_name in BUILTIN_OFFLINE and not isinstance(wanted, nn.Module):
            # the built-in digits: `all` means the seven small variants, ibn_a the small IBN-a
            names = [wanted] if isinstance(wanted, str) else list(wanted)
            if names == ["all"]:
                return list(SMALL_MODELS)
            wanted = [n if isinstance(n, nn.Module) or is_external(n) else builtin_model_name(n, self.ds_name) for n in names]
        found = list(dict.fromkeys(resolve_models(wanted, pretrained=self.req.pretrained)))
        if not found:
            raise DgbenchError(f"no model matches {self.req.model!r}")
        return found

    def _dataset(self, name: str, prep: Preprocess) -> Any:
        """A domain's dataset for the model's preprocessing (a segmentation dataset: its images)."""
        from ..data.base import dataset_task
        from ..data.scene_images import SceneImages
        from .appearance import select

        if (prep, name) not in self.datasets:
            roots = self.req.options.get("roots") or {}
            root = self.root if name == self.ds_name else roots.get(name)
            if dataset_task(name) == "segmentation":
                ds: Any = SceneImages(build_dataset(name, root), prep)
            else:
                ds = build_dataset(name, root, preprocess=prep)
            self.datasets[(prep, name)] = select(ds, self.req.limit, self.req.subset)
        return self.datasets[(prep, name)]

    def _usable(self, pairs: list[DomainPair], prep: Preprocess) -> list[DomainPair]:
        """The pairs whose data are here; an optional pair without its data is skipped, with a note."""
        out = []
        for p in pairs:
            try:
                for d in p.domains or ():
                    self._dataset(d, prep)
            except DgbenchError as exc:
                if not p.optional:
                    raise
                if p.name not in self.skipped:
                    self.skipped.add(p.name)
                    self.req.say(f"pair {p.name} skipped (optional, its data are not here): {str(exc).splitlines()[0]}")
                continue
            out.append(p)
        return out

    def _identity(self, m: nn.Module, name: Any, prep: Preprocess, ds: Any, probes: list[Probe]) -> tuple[dict, dict]:
        """The model's identity (its key fields and which weights ran), and the fields that describe the execution."""
        req = self.req
        base = dict(model_identity(m, name, req, self.rt.precision, prep, ds, protocol=self.proto.name,
                                   dataset=self.ds_name, subset=req.subset), kind="divergence")
        extra = dict(dataset_info=ds.describe(), device=str(self.rt.device), batch_size=req.batch_size,
                     world_size=self.rt.world_size, num_layers=len(probes), **self.stamp)
        return base, extra

    def _model(self, name: Any, several: bool = False) -> tuple[list[dict[str, Any]], int]:
        """Every (pair, layer) record of one model (stored ones reused, the rest measured), and the
        images streamed."""
        from .model_select import build_model

        req = self.req
        m = build_model(name, pretrained=req.pretrained, checkpoint=req.checkpoint, seed=req.seed,
                        kwargs=req.model_kwargs)
        try:
            probes = find_probes(m)
        except DgbenchError:
            if several:  # `--model all`: the zoo's DenseNets have no residual probes
                raise _NoProbes() from None
            raise
        prep = Preprocess.from_cfg(m.pretrained_cfg)  # type: ignore[attr-defined]
        ds = self._dataset(self.ds_name, prep)
        base, extra = self._identity(m, name, prep, ds, probes)
        pairs = self._usable(self.pairs, prep)
        passes = _Passes(self, m, probes, prep, base["model"])
        plans = {p.name: self._plan(p, ds, prep, passes) for p in pairs}
        keys = {p.name: [record_key({**base, "pair": p.name, "pair_spec": plans[p.name][0], "layer": q.name})
                         for q in probes] for p in pairs}
        todo = [p for p in pairs if len(self.loop.stored(keys[p.name])) < len(probes)]
        # Content pairs' passes first: their grouped pass also yields the clean domain other pairs need.
        for pair in [p for p in todo if p.type == "content"]:
            passes.get(plans[pair.name][1])
        out = []
        for pair in pairs:  # records in the protocol's order; a pair's layers are stored together
            recs, new = self.loop.unit(keys[pair.name], lambda missing, stored, pair=pair: self._measure(
                pair, plans[pair.name], probes, passes, base, extra))
            if not new:
                req.say(f"{base['model']} · {pair.name}: all {len(probes)} layers already stored "
                        "(use --force to recompute)")
            out += recs
        return out, passes.images

    def _measure(self, pair: DomainPair, plan: tuple[dict[str, Any], _Domain, _Domain], probes: list[Probe],
                 passes: _Passes, base: dict, extra: dict) -> list[dict[str, Any]]:
        """One record per layer of one pair (its domains streamed now unless another pair did)."""
        spec, dom_a, dom_b = plan
        t0 = time.perf_counter()
        ma, mb = passes.get(dom_a), passes.get(dom_b)
        recs = []
        for p in probes:
            a, b = ma[p.name], mb[p.name]
            rec = new_record(**base, **extra, pair=pair.name, pair_spec=spec, layer=p.name, layer_index=p.index,
                             has_in=p.has_in, metrics={"divergence": layer_divergence(a, b)},
                             num_samples=int(a.count + b.count), domain_sizes=[int(a.count), int(b.count)],
                             duration_s=time.perf_counter() - t0)
            recs.append(rec)
        return recs

    # -- pairs -> domains --------------------------------------------------------------------
    def _plan(self, pair: DomainPair, ds: Any, prep: Preprocess, passes: _Passes) -> tuple[dict[str, Any], _Domain, _Domain]:
        """The pair's record spec and its two domains (registered with ``passes``)."""
        spec = pair.to_dict()
        if pair.shift:
            shift, source = self._shift(pair, ds, prep)
            spec["shift_spec"] = shift.to_dict()
            passes.add("base", ds, Branch(ORIGIN))
            passes.add("base", ds, Branch(shift, source))
            return spec, _Domain(("base", "origin", "")), _Domain(("base", shift.name, ""))
        if pair.domains:
            keys = []
            spec["datasets"] = []
            for d in pair.domains:
                dd = ds if d == self.ds_name else self._dataset(d, prep)
                key = "base" if d == self.ds_name else d
                passes.add(key, dd, Branch(ORIGIN))
                spec["datasets"].append({"name": d, "fingerprint": dd.fingerprint(), "images": len(dd)})
                keys.append(_Domain((key, "origin", "")))
            return spec, keys[0], keys[1]
        labels = _labels(ds)
        a, b = class_halves(labels, pair.classes or "index", pair.seed)
        group = {c: 0 for c in a} | {c: 1 for c in b}
        grouping = f"classes:{pair.classes}:{pair.seed}"
        passes.add("base", ds, Branch(ORIGIN), grouping, [group[y] for y in labels])
        spec["halves"] = [a, b]
        return spec, _Domain(("base", "origin", grouping), 0), _Domain(("base", "origin", grouping), 1)

    def _shift(self, pair: DomainPair, ds: Any, prep: Preprocess) -> tuple[ShiftSpec, Any]:
        from . import get_shift
        from .appearance import image_source

        spec = get_shift(pair.shift or "")
        if not spec.is_image:
            return spec, None
        try:
            spec, src = image_source(spec, ds, prep, self.req.cache_root, self.req.progress and self.rt.is_main)
        except DgbenchError as exc:
            if not pair.fallback:
                raise
            self.req.say(f"pair {pair.name}: {spec.name} renderings unavailable, using {pair.fallback} "
                         f"(recorded as such): {str(exc).splitlines()[0]}")
            return self._shift(DomainPair(pair.name, pair.dataset, pair.type, shift=pair.fallback), ds, prep)
        return spec, src


def _labels(ds: Any) -> list[int]:
    """Every label without decoding (a selection maps through to its base dataset)."""
    if hasattr(ds, "indices") and hasattr(ds, "base"):
        base = _labels(ds.base)
        return [base[i] for i in ds.indices]
    if hasattr(ds, "samples"):
        return [int(s[1]) for s in ds.samples]
    if hasattr(ds, "labels"):
        return [int(v) for v in ds.labels]
    return [int(ds[i][1]) for i in range(len(ds))]


class _Passes:
    """The streaming passes of one model, shared by its pairs: each domain is computed once."""

    def __init__(self, run: _Run, model: nn.Module, probes: list[Probe], prep: Preprocess, mname: str):
        self.run, self.model, self.probes, self.mname = run, model, probes, mname
        # (dataset key, grouping) -> dataset, group ids, and the branches wanted
        self.wanted: dict[tuple[str, str], tuple[Any, Any, dict[str, Branch]]] = {}
        self.done: dict[tuple[str, str, str], list[dict[str, Moments]]] = {}
        self.images = 0

    def add(self, key: str, ds: Any, branch: Branch, grouping: str = "", groups: list[int] | None = None) -> None:
        _, _, branches = self.wanted.setdefault((key, grouping), (ds, groups, {}))
        branches.setdefault(branch.spec.name, branch)

    def get(self, dom: _Domain) -> dict[str, Moments]:
        key, shift, grouping = dom.key
        if dom.key not in self.done:
            self._compute(key, grouping)
        return self.done[dom.key][dom.group]

    def _compute(self, key: str, grouping: str) -> None:
        ds, groups, branches = self.wanted[(key, grouping)]
        todo = [b for n, b in branches.items() if (key, n, grouping) not in self.done]
        grouped = next((g for (k, g) in self.wanted if k == key and g and (key, "origin", g) in self.done), None)
        if grouping == "" and grouped is not None:
            # the clean domain is the merge of a grouped pass's groups: no second pass needed
            parts = self.done[(key, "origin", grouped)]
            self.done[(key, "origin", "")] = [{p.name: _merge_all([pt[p.name] for pt in parts]) for p in self.probes}]
            todo = [b for b in todo if b.spec.name != "origin"]
        if not todo:
            return
        from .appearance import BUILTIN_OFFLINE

        req = self.run.req
        n_groups = 2 if grouping else 1
        # The built-in digits live in memory: a loader process costs more than it saves.
        workers = 0 if req.workers is None and self.run.ds_name in BUILTIN_OFFLINE else req.workers
        cfg = PassConfig(batch_size=req.batch_size, workers=workers, precision=self.run.rt.precision,
                         channels_last=req.channels_last, progress=req.progress,
                         description=f"{self.mname} · {key if key != 'base' else self.run.ds_name} · "
                                     + ", ".join(b.spec.name for b in todo))
        got: PassMoments = run_pass(self.model, ds, todo, self.probes, self.run.rt, cfg, groups, n_groups)
        self.images += len(ds)
        for b, per_group in zip(todo, got):
            self.done[(key, b.spec.name, grouping)] = per_group


def _merge_all(parts: list[Moments]) -> Moments:
    out = parts[0]
    for p in parts[1:]:
        out = merge(out, p)
    return out


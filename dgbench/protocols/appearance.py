"""Running the appearance protocols: models x shifts on one classification dataset.

For each model: build the model, build the dataset for its preprocessing (once per distinct
preprocessing), work out which (model, shift) results the store already holds (their record key
hashes model, weights, dataset content, shift spec, preprocessing, precision, limit/subset, seed),
run the rest in one pass of the engine (one decode per image, one forward per shift, image shifts
from the style cache), and append the model's records to the store only once the pass is complete:
an interrupted run writes nothing partial and resumes where it stopped.

Dataset selection (``choose_dataset``): ``dataset`` if given; ``data`` alone means ImageNet;
``$DGBENCH_IMAGENET`` means ImageNet; otherwise the built-in ``digits`` when registered.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..builtin.domains import DIGIT_DOMAINS
from ..builtin.names import builtin_model_name
from ..config import ENV_VARS, results_dir
from ..data.base import Preprocess, build_dataset, class_balanced_indices, dataset_task, list_datasets
from ..engine import EngineConfig, EvalResult, evaluate
from ..errors import DatasetNotFoundError, DgbenchError, SpecError
from ..models.external import is_external
from ..metrics.outcomes import SampleOutcomes
from ..results import outcomes
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..runtime import Runtime
from ..shifts import ShiftSpec
from . import style_cache
from .base import Note, Protocol, RunRequest, RunSummary, reject_options
from .identity import model_identity
from .measure import MeasureLoop
from .model_select import build_model, model_cfg, refuse_other_classes, resolve_models, scored_classes, split_names
from .specs import protocol_shifts

BUILTIN_OFFLINE = DIGIT_DOMAINS  # datasets without Monet renderings, unless they say otherwise


# ----------------------------------------------------------------------------- datasets
def choose_dataset(dataset: str | None = None, data: str | os.PathLike | None = None) -> tuple[str, str | None, str | None]:
    """``(dataset name, root or None, note for the user or None)`` following the documented order."""
    if dataset:
        return dataset, (str(data) if data else None), None
    if data:
        return "imagenet", str(data), None
    if os.environ.get(ENV_VARS["imagenet"]):
        return "imagenet", None, None
    if "digits" in list_datasets(task="classification"):
        return "digits", None, (
            "no ImageNet configured: using the built-in 'digits' data. Point dgbench at ImageNet "
            "with --data /path/to/imagenet/val or DGBENCH_IMAGENET=/path/to/imagenet/val."
        )
    raise DatasetNotFoundError(
        "no dataset: pass --data /path/to/imagenet/val (or set DGBENCH_IMAGENET), or --dataset NAME "
        f"for a registered dataset ({', '.join(list_datasets(task='classification')) or 'none registered'})"
    )


class Selection(torch.utils.data.Dataset):
    """A fixed selection of a dataset's samples (``--subset`` then ``--limit``), forwarding its identity."""

    def __init__(self, base: Any, indices: Sequence[int], limit: int | None, subset: int | None):
        self.base, self.indices, self.limit, self.subset = base, list(indices), limit, subset
        self.name = base.name
        self.num_classes = base.num_classes
        self.offline_styles_only = offline_styles_only(base)
        if hasattr(base, "decode_info"):  # --decode gpu: recorded in the preprocessing
            self.decode_info = base.decode_info

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[self.indices[i]]

    def __getattr__(self, name: str) -> Any:
        # --decode gpu's hooks, present only where the dataset has them (ImageNet)
        base = self.__dict__.get("base")
        if name == "encoded" and hasattr(base, "encoded"):
            return lambda i: base.encoded(self.indices[i])
        if name == "device_decoder" and hasattr(base, "device_decoder"):
            return base.device_decoder
        raise AttributeError(name)

    def sample_id(self, i: int) -> str:
        return style_cache.sample_id(self.base, self.indices[i])

    def fingerprint(self) -> str:
        return self.base.fingerprint()  # the whole dataset's: limit/subset are recorded beside it

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "images_selected": len(self.indices)}


def labels_of(ds: Any) -> list[int]:
    """All labels without decoding where the dataset lists them (ImageNet samples, digits labels)."""
    if hasattr(ds, "samples"):
        return [int(s[1]) for s in ds.samples]
    if hasattr(ds, "labels"):
        return [int(v) for v in ds.labels]
    return [int(ds[i][1]) for i in range(len(ds))]


def select(ds: Any, limit: int | None = None, subset: int | None = None) -> Any:
    """``subset``: a fixed class-balanced choice (round-robin over classes, each in index order);
    then ``limit``: the first N. Returns ``ds`` itself when neither is set."""
    if not limit and not subset:
        return ds
    idx = list(range(len(ds)))
    if subset:
        idx = class_balanced_indices(labels_of(ds), subset)
    if limit:
        idx = idx[:limit]
    return Selection(ds, idx, limit, subset)


def offline_styles_only(ds: Any) -> bool:
    return bool(getattr(ds, "offline_styles_only", getattr(ds, "name", "") in BUILTIN_OFFLINE))


def model_names(req: RunRequest, ds_name: str) -> list[Any]:
    """The models a request names, on ``ds_name`` (on the built-in digits ``ibn_a`` is the small one)."""
    wanted = req.model
    if ds_name in BUILTIN_OFFLINE and isinstance(wanted, (str, list, tuple)) and wanted != "all":
        names = split_names(wanted)
        names = [names] if isinstance(names, str) else list(names)
        wanted = [n if is_external(n) else builtin_model_name(n, ds_name) for n in names]  # ibn_a: the small one
    names = list(dict.fromkeys(resolve_models(wanted, pretrained=req.pretrained)))
    if not names:
        raise DgbenchError(f"no model matches {req.model!r}")
    return names


# ----------------------------------------------------------------------------- image shifts
def image_source(spec: ShiftSpec, ds: Any, prep: Preprocess, cache_root: Path | None = None,
                 progress: bool = True, data_c: str | os.PathLike | None = None) -> tuple[ShiftSpec, Any]:
    """The source of an image shift's renderings, and the spec as run (Monet: with the generator's hash)."""
    if spec.kind == "corruption" and data_c:  # the published ImageNet-C files instead of rendering
        from ..data.imagenet_c import source_for

        return source_for(spec, ds, data_c)
    if spec.kind in style_cache.SELF_RENDERED:  # cv_stylize, corruption: need no weights
        # Render the missing images into the cache now: every model of the run (and every later
        # run) then reads them instead of filtering each image again.
        return style_cache.rendered_source(spec, ds, prep, root=cache_root, progress=progress)
    pinned = spec.params.get("sha256")
    found = style_cache.find_caches(spec, ds, prep, cache_root)
    if pinned:
        found = [f for f in found if style_cache.read_manifest(f).get("generator_sha256", "").startswith(pinned)]
    complete = [f for f in found if not style_cache.missing(f, ds)]
    if not complete:
        where = f"{found[0]} lacks {len(style_cache.missing(found[0], ds))} of {len(ds)} images" if found else "no cache found"
        data = ds.describe().get("root", "<data dir>")
        raise DgbenchError(
            f"shift {spec.name!r} needs images rendered by its CycleGAN generator ({where}). Build the cache "
            f"once with:\n  dgbench prepare {spec.name} --data {data} --weights /path/to/latest_net_G.pth\n"
            "(the CycleGAN authors' pretrained 'style_monet' model: see docs/appearance.md, "
            "'The Monet generator'), or run without it: --protocol appearance-lite, or --shifts origin,rgb+50,r+50,std-x1.5"
        )
    man = style_cache.read_manifest(complete[0])
    return spec.with_params(generator_sha256=man["generator_sha256"]), style_cache.CachedStyle(complete[0])


# ----------------------------------------------------------------------------- the protocol
class AppearanceProtocol(Protocol):
    """``kind = "appearance"``: models x shifts of one classification dataset (Table 1's shape).

    TOML fields: ``shifts`` (names), ``families`` (every member), ``reference`` (the shift drops
    are measured from, default ``origin``), ``fallbacks`` (shift -> replacement on datasets with
    ``offline_styles_only``, e.g. Monet -> cv-stylize on the built-in digits).
    """

    kind = "appearance"
    fields = {"shifts": list, "families": list, "reference": str, "fallbacks": dict}

    @classmethod
    def validate(cls, spec: Any, reg: Any) -> None:
        where = f"{spec.source}: protocols.{spec.name}"
        for name in spec.params.get("shifts", []):
            if name not in reg.shifts:
                raise SpecError(f"{where}.shifts: unknown shift {name!r}")
        for fam in spec.params.get("families", []):
            if fam not in reg.families:
                raise SpecError(f"{where}.families: unknown family {fam!r}")
        if spec.reference not in reg.shifts:
            raise SpecError(f"{where}.reference: unknown shift {spec.reference!r}")
        for a, b in spec.fallbacks.items():
            if b not in reg.shifts:
                raise SpecError(f"{where}.fallbacks.{a}: unknown shift {b!r}")

    def datasets(self) -> list[str]:
        return list_datasets(task="classification")

    def conditions(self) -> list[str]:
        return [s.replace("family:", "family ") for s in self.spec.shifts]

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        from .rerun import appearance_request

        return appearance_request(self.name, dataset, rows)

    def run(self, req: RunRequest, rt: Runtime) -> RunSummary:
        reject_options(req, self.name, ("data_c", "decode", "compile", "no_outcomes"))
        specs = protocol_shifts(self.name, list(req.shifts) if req.shifts else None)
        ds_name, root, ds_note = choose_dataset(req.dataset, req.data)
        if ds_note:
            req.say(ds_note)
        if dataset_task(ds_name) != "classification":
            raise DgbenchError(f"--dataset {ds_name}: the {self.name} protocol measures classifiers; {ds_name} is a "
                               "segmentation dataset (try --protocol cross-domain)")
        rstore = ResultStore(results_dir(req.results)) if req.store else None
        run = _Run(self, req, rt, specs, ds_name, root, MeasureLoop(rstore, self.name, req.force, rt.is_main))
        names = run.model_names()
        t0 = time.perf_counter()
        for name in names:
            run.measure(name, several=len(names) > 1)
        if run.skipped:
            shown = ", ".join(run.skipped[:3]) + (", ..." if len(run.skipped) > 3 else "")
            if len(run.skipped) == len(names):
                raise DgbenchError(f"no model asked for scores the {ds_name} classes, so nothing was measured: {shown} "
                                   f"(use models made for {ds_name})")
            req.say(f"skipped {len(run.skipped)} model(s) whose classifier does not fit the classes of {ds_name} ({shown})")
        return RunSummary(run.out, run.loop.computed, run.loop.reused, time.perf_counter() - t0, run.images, ds_name,
                          self.kind)


@dataclass
class _Run:
    """One appearance run's state: datasets by preprocessing, records so far, counters."""

    proto: AppearanceProtocol
    req: RunRequest
    rt: Runtime
    specs: list[ShiftSpec]
    ds_name: str
    root: str | None
    loop: MeasureLoop
    datasets: dict[Preprocess, Any] = field(default_factory=dict)
    out: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # models made for another label set
    images: int = 0

    def model_names(self) -> list[Any]:
        return model_names(self.req, self.ds_name)

    def dataset_for(self, prep: Preprocess) -> Any:
        if prep not in self.datasets:
            extra = {"decode": "gpu"} if _decode(self.req) == "gpu" else {}
            if extra and self.ds_name != "imagenet":
                raise DgbenchError(f"--decode gpu: decodes ImageNet's JPEG files on the device; {self.ds_name} has none "
                                   "(use --decode pil)")
            self.datasets[prep] = select(build_dataset(self.ds_name, self.root, preprocess=prep, **extra),
                                         self.req.limit, self.req.subset)
        return self.datasets[prep]

    def measure(self, name: Any, several: bool) -> None:
        """Evaluate one model under every shift not already stored; store its records at once."""
        req = self.req
        # The dataset comes from the model's preprocessing, read before building (and downloading)
        # the model, so that `--model all` skips models made for another dataset without fetching them.
        mcfg = model_cfg(name)
        m = None
        if mcfg is None:  # an external model: build it to learn its preprocessing
            m = build_model(name, pretrained=req.pretrained, checkpoint=req.checkpoint, seed=req.seed, kwargs=req.model_kwargs)
            mcfg = m.pretrained_cfg  # type: ignore[attr-defined]
        prep = Preprocess.from_cfg(mcfg)
        ds = self.dataset_for(prep)
        if not self.fits(name, m, mcfg, ds, several):
            return
        m = m or build_model(name, pretrained=req.pretrained, checkpoint=req.checkpoint, seed=req.seed, kwargs=req.model_kwargs)
        base = self.identity(m, name, prep, ds)
        keyed, sources = self.keyed_shifts(ds, prep, base)

        def compute(missing: list[str], stored: dict[str, Any]) -> list[dict[str, Any]]:
            todo = [(s, k) for s, k in keyed if k in missing]
            new, kept = self.evaluate(m, ds, base, todo, keyed[0], stored, sources)
            if self.loop.store is not None and self.loop.write:
                # per-image outcomes first (each file atomic), the loop appends the records after:
                # a record never exists without its outcomes
                outcomes.write_all(self.loop.store.root, self.proto.name, kept, style_cache.sample_order(ds) if kept else "")
            return new

        records, new = self.loop.unit([k for _, k in keyed], compute)  # one engine pass for the model's shifts
        if not new:
            req.say(f"{base['model']}: all {len(keyed)} results already stored (use --force to recompute)")
        self.out += records

    def fits(self, name: Any, m: nn.Module | None, mcfg: Any, ds: Any, several: bool) -> bool:
        """Whether the model scores the dataset's classes. One of several that does not is skipped;
        one named alone is refused, as nothing it stored would mean anything. A module the Python
        caller passes is trusted (a toy head on a folder holding only its classes)."""
        scored = scored_classes(name, m, mcfg, self.req.model_kwargs)
        if scored == ds.num_classes:
            return True
        if several:
            self.skipped.append(str(name))
            return False
        if isinstance(name, nn.Module):
            return True
        raise refuse_other_classes(name, scored, ds.name, ds.num_classes)

    def identity(self, m: nn.Module, name: Any, prep: Preprocess, ds: Any) -> dict[str, Any]:
        return model_identity(m, name, self.req, self.rt.precision, prep, ds, protocol=self.proto.name,
                              dataset=ds.name, subset=self.req.subset)

    def keyed_shifts(self, ds: Any, prep: Preprocess, base: dict[str, Any]) -> tuple[list[tuple[ShiftSpec, str]], dict[str, Any]]:
        """Each shift as run (fallbacks applied; an image shift names what rendered it) and its key."""
        sources: dict[str, Any] = {}
        keyed: list[tuple[ShiftSpec, str]] = []
        for s in self.specs:
            s = get_shift_or_fallback(s, self.proto.spec.fallbacks, ds)
            if s.is_image:
                s, sources[s.name] = image_source(s, ds, prep, self.req.cache_root, self.req.progress and self.rt.is_main,
                                                  self.req.options.get("data_c"))
            keyed.append((s, record_key({**base, "shift": s.name, "shift_spec": s.to_dict()})))
        return keyed, sources

    def evaluate(self, m: nn.Module, ds: Any, base: dict[str, Any], todo: list[tuple[ShiftSpec, str]],
                 ref: tuple[ShiftSpec, str], stored: dict[str, Any], sources: dict[str, Any]
                 ) -> tuple[list[dict[str, Any]], dict[str, SampleOutcomes]]:
        """The new records, and their per-image outcomes by record key (none with --no-outcomes or no store)."""
        req = self.req
        cfg = EngineConfig(device=str(self.rt.device), batch_size=req.batch_size, workers=req.workers,
                           precision=self.rt.precision, channels_last=req.channels_last, skip_corrupt=req.skip_corrupt,
                           progress=req.progress, decode=_decode(req), compile=bool(req.options.get("compile")),
                           outcomes=self.loop.store is not None and not req.options.get("no_outcomes"))
        res: EvalResult = evaluate(m, ds, [s for s, _ in todo], sources=sources, config=cfg, runtime=self.rt)
        self.images += res.num_samples + res.skipped_corrupt
        ref_spec, ref_key = ref  # protocol_shifts puts the reference first
        ref_metrics = res.counts[ref_spec.name].errors() if ref_spec.name in res.counts else stored[ref_key]["metrics"]
        new = []
        for s, _ in todo:
            metrics = res.counts[s.name].errors()
            is_ref = s.name == ref_spec.name
            rec = new_record(kind="appearance",
                **base, shift=s.name, shift_spec=s.to_dict(), reference=None if is_ref else ref_spec.name,
                metrics=metrics, drop={} if is_ref else {m_: metrics[m_] - ref_metrics[m_] for m_ in metrics},
                num_samples=res.num_samples, skipped_corrupt=res.skipped_corrupt, skipped_files=res.skipped_files[:100],
                dataset_info=ds.describe(), device=res.device, batch_size=req.batch_size, world_size=res.world_size,
                duration_s=res.duration_s, images_per_s=res.images_per_s,
                forward_images_per_s=res.num_samples * len(todo) / res.duration_s if res.duration_s else None,
            )
            new.append(rec)
        kept = {k: res.outcomes[s.name] for s, k in todo} if res.outcomes else {}
        return new, kept


def _decode(req: RunRequest) -> str:
    return req.options.get("decode") or "pil"


def run_protocol(model: Any = "ibn_a", protocol: str = "appearance", *, note: Note | None = None,
                 **request: Any) -> RunSummary:
    """Run an appearance protocol from Python: the fields of :class:`RunRequest` as keywords.

    Results already stored under the same key are reused (not recomputed) unless ``force``.
    With ``store=False`` nothing is read from or written to the results directory.
    """
    from .base import run

    return run(protocol, RunRequest(model=model, note=note, **request))


def get_shift_or_fallback(spec: ShiftSpec, fallbacks: dict[str, str], ds: Any) -> ShiftSpec:
    """The protocol's replacement for ``spec`` on datasets without cached style renderings."""
    from .specs import get_shift

    if spec.name in fallbacks and offline_styles_only(ds):
        return get_shift(fallbacks[spec.name])
    return spec


def evaluate_model(
    model: str | nn.Module,
    shifts: Sequence[str] = ("origin",),
    *,
    dataset: str | None = None,
    data: str | os.PathLike | None = None,
    limit: int | None = None,
    subset: int | None = None,
    pretrained: bool = True,
    checkpoint: str | None = None,
    seed: int = 0,
    config: EngineConfig | None = None,
    cache_root: Path | None = None,
) -> dict[str, dict[str, float]]:
    """One model under some shifts, no results store: ``{shift: {"top1_err": .., "top5_err": ..}}``."""
    from .specs import get_shift

    m = build_model(model, pretrained=pretrained, checkpoint=checkpoint, seed=seed)
    ds_name, root, _ = choose_dataset(dataset, data)
    prep = Preprocess.from_cfg(m.pretrained_cfg)  # type: ignore[attr-defined]
    ds = select(build_dataset(ds_name, root, preprocess=prep), limit, subset)
    specs, sources = [], {}
    for n in shifts:
        s = get_shift(n)
        if s.is_image:
            s, sources[s.name] = image_source(s, ds, prep, cache_root, config.progress if config else False)
        specs.append(s)
    res = evaluate(m, ds, specs, sources=sources, config=config)
    return {s.name: res.counts[s.name].errors() for s in specs}

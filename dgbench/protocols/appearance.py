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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ENV_VARS, results_dir
from ..data.base import Preprocess, build_dataset, class_balanced_indices, list_datasets
from ..engine import EngineConfig, EvalResult, dist_info, evaluate, maybe_init_distributed, resolve_device
from ..errors import DatasetNotFoundError, DgbenchError, UnknownNameError
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..shifts import ShiftSpec
from . import get_protocol, protocol_shifts, style_cache

BUILTIN_OFFLINE = ("digits", "typeset-digits")  # datasets without Monet renderings, unless they say otherwise
Note = Callable[[str], None]


# ----------------------------------------------------------------------------- datasets
def choose_dataset(dataset: str | None = None, data: str | os.PathLike | None = None) -> tuple[str, str | None, str | None]:
    """``(dataset name, root or None, note for the user or None)`` following the documented order."""
    if dataset:
        return dataset, (str(data) if data else None), None
    if data:
        return "imagenet", str(data), None
    if os.environ.get(ENV_VARS["imagenet"]):
        return "imagenet", None, None
    if "digits" in list_datasets():
        return "digits", None, (
            "no ImageNet configured: using the built-in 'digits' data. Point dgbench at ImageNet "
            "with --data /path/to/imagenet/val or DGBENCH_IMAGENET=/path/to/imagenet/val."
        )
    raise DatasetNotFoundError(
        "no dataset: pass --data /path/to/imagenet/val (or set DGBENCH_IMAGENET), or --dataset NAME "
        f"for a registered dataset ({', '.join(list_datasets()) or 'none registered'})"
    )


class Selection(torch.utils.data.Dataset):
    """A fixed selection of a dataset's samples (``--subset`` then ``--limit``), forwarding its identity."""

    def __init__(self, base: Any, indices: Sequence[int], limit: int | None, subset: int | None):
        self.base, self.indices, self.limit, self.subset = base, list(indices), limit, subset
        self.name = base.name
        self.num_classes = base.num_classes
        self.offline_styles_only = offline_styles_only(base)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[self.indices[i]]

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


# ----------------------------------------------------------------------------- models
def resolve_models(spec: str | Sequence[str], *, pretrained: bool = True) -> list[str]:
    """``NAME`` / alias, ``all`` (every classification model, with weights when ``pretrained``), or a glob."""
    from ..models import list_models, resolve_name

    if not isinstance(spec, str):
        return [resolve_name(s) for s in spec]
    if spec == "all":
        return list_models(task="classification", pretrained=pretrained)
    try:
        return [resolve_name(spec)]
    except UnknownNameError as exc:
        hits = list_models(spec, task="classification")
        if not hits:
            raise exc from None
        return hits


def builtin_model_names(names: Sequence[str]) -> list[str]:
    """On the built-in digits, ``ibn_a`` means the small model of that variant (see models.small)."""
    try:
        from ..models.small import small_name_for
    except ImportError:  # the small models are not in this checkout
        return list(names)
    return list(dict.fromkeys(small_name_for(n) for n in names))


def _registry_cfg(name: str) -> Any:
    from ..models import get_pretrained_cfg

    return get_pretrained_cfg(name)


def build_model(name: str | nn.Module, *, pretrained: bool = True, checkpoint: str | None = None, seed: int = 0) -> nn.Module:
    if isinstance(name, nn.Module):
        return name
    from ..models import create_model

    torch.manual_seed(seed)  # random-weight runs are reproducible (and the seed is recorded)
    return create_model(name, pretrained=checkpoint or pretrained)


# ----------------------------------------------------------------------------- image shifts
def image_source(spec: ShiftSpec, ds: Any, prep: Preprocess, cache_root: Path | None = None,
                 progress: bool = True) -> tuple[ShiftSpec, style_cache.CachedStyle]:
    """The source of an image shift's renderings, and the spec as run (Monet: with the generator's hash)."""
    if spec.kind == "cv_stylize":
        # Needs no weights, so render the missing images into the cache now: every model of the
        # run (and every later run) then reads them instead of filtering each image again.
        report = style_cache.prepare(spec, ds, prep, root=cache_root, progress=progress)
        return spec, style_cache.CachedStyle(report.folder, spec)
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
            "(the CycleGAN authors' pretrained 'style_monet' model: see the README's Appearance protocol "
            "section), or run without it: --protocol appearance-lite, or --shifts origin,rgb+50,r+50,std-x1.5"
        )
    man = style_cache.read_manifest(complete[0])
    return spec.with_params(generator_sha256=man["generator_sha256"]), style_cache.CachedStyle(complete[0])


# ----------------------------------------------------------------------------- the protocol
@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    computed: int  # (model, shift) results computed in this run
    reused: int  # results already stored and skipped
    duration_s: float
    images: int  # images decoded in this run (summed over model passes)
    dataset: str


def _preprocessing_info(prep: Preprocess, model: nn.Module, ds: Any) -> dict[str, Any]:
    cfg = model.pretrained_cfg  # type: ignore[attr-defined]
    info = {**prep.to_dict(), "mean": list(cfg.mean), "std": list(cfg.std)}
    info["decode"] = getattr(ds, "decode_info", "PIL decode + antialiased resize (torchvision Resize/CenterCrop on PIL)" if ds.name == "imagenet" else ds.name)
    return info


def run_protocol(
    model: str | Sequence[str] | nn.Module = "ibn_a",
    protocol: str = "appearance",
    *,
    dataset: str | None = None,
    data: str | os.PathLike | None = None,
    shifts: Sequence[str] | None = None,
    limit: int | None = None,
    subset: int | None = None,
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    precision: str = "fp32",
    channels_last: bool = True,
    results: str | os.PathLike | None = None,
    store: bool = True,
    force: bool = False,
    skip_corrupt: bool = False,
    pretrained: bool = True,
    checkpoint: str | None = None,
    seed: int = 0,
    progress: bool = True,
    cache_root: Path | None = None,
    note: Note | None = None,
) -> RunSummary:
    """Run ``protocol`` for one or more models and return every (model, shift) record.

    Results already stored under the same key are reused (not recomputed) unless ``force``.
    With ``store=False`` nothing is read from or written to the results directory.
    """
    import time

    say: Note = note or (lambda s: None)
    proto = get_protocol(protocol)
    specs = protocol_shifts(protocol, list(shifts) if shifts else None)
    ds_name, root, ds_note = choose_dataset(dataset, data)
    if ds_note:
        say(ds_note)
    dev = resolve_device(device)
    maybe_init_distributed(dev)
    rank, world = dist_info()
    rstore = ResultStore(results_dir(results)) if store else None
    done = rstore.completed_keys(proto.name) if rstore and not force else set()
    if isinstance(model, nn.Module):
        names: list[Any] = [model]
    else:
        wanted: str | list[str] = model if isinstance(model, str) else list(model)
        if ds_name in BUILTIN_OFFLINE and wanted != "all":  # ibn_a means the small ibn_a there
            wanted = builtin_model_names([wanted] if isinstance(wanted, str) else wanted)
            wanted = wanted[0] if len(wanted) == 1 else wanted
        names = resolve_models(wanted, pretrained=pretrained)
    if not names:
        raise DgbenchError(f"no model matches {model!r}")
    cfg = EngineConfig(device=str(dev), batch_size=batch_size, workers=workers, precision=precision,
                       channels_last=channels_last, skip_corrupt=skip_corrupt, progress=progress)
    datasets: dict[Preprocess, Any] = {}
    out: list[dict[str, Any]] = []
    computed = reused = images = 0
    skipped: list[str] = []  # models made for another label set (e.g. ImageNet models on digits)
    t0 = time.perf_counter()
    for name in names:
        # The dataset comes from the model's preprocessing, read before building (and downloading)
        # the model, so that `--model all` skips models made for another dataset without fetching them.
        mcfg = name.pretrained_cfg if isinstance(name, nn.Module) else _registry_cfg(name)
        prep = Preprocess.from_cfg(mcfg)
        if prep not in datasets:
            datasets[prep] = select(build_dataset(ds_name, root, preprocess=prep), limit, subset)
        ds = datasets[prep]
        if mcfg.num_classes != ds.num_classes and len(names) > 1:
            skipped.append(str(name))
            continue
        m = build_model(name, pretrained=pretrained, checkpoint=checkpoint, seed=seed)
        mname = getattr(m, "dgbench_name", type(m).__name__)
        run_specs = [get_shift_or_fallback(s, proto.fallbacks, ds) for s in specs]
        base = dict(
            task="classification", protocol=proto.name, model=mname, model_kwargs=getattr(m, "variant_kwargs", {}),
            weights_sha256=getattr(m, "weights_sha256", None), dataset=ds.name, dataset_fingerprint=ds.fingerprint(),
            preprocessing=_preprocessing_info(prep, m, ds), precision=precision, limit=limit, subset=subset,
            seed=seed if getattr(m, "weights_sha256", None) is None else None,
        )
        sources: dict[str, Any] = {}
        keyed: list[tuple[ShiftSpec, str]] = []
        for s in run_specs:
            if s.is_image:  # the spec as run: a Monet record names the generator that rendered it
                s, sources[s.name] = image_source(s, ds, prep, cache_root, progress and rank == 0)
            keyed.append((s, record_key({**base, "shift": s.name, "shift_spec": s.to_dict()})))
        ref_spec, ref_key = keyed[0]  # protocol_shifts puts the reference first
        stored = {k: rstore.find(k, proto.name) for _, k in keyed if k in done} if rstore else {}
        todo = [(s, k) for s, k in keyed if stored.get(k) is None]
        if not todo:
            say(f"{mname}: all {len(keyed)} results already stored (use --force to recompute)")
            out += [stored[k] for _, k in keyed]
            reused += len(keyed)
            continue
        res: EvalResult = evaluate(m, ds, [s for s, _ in todo], sources=sources, config=cfg)
        images += res.num_samples + res.skipped_corrupt
        ref_metrics = res.counts[ref_spec.name].errors() if ref_spec.name in res.counts else stored[ref_key]["metrics"]
        new = []
        for s, k in todo:
            metrics = res.counts[s.name].errors()
            is_ref = s.name == ref_spec.name
            rec = new_record(
                **base, shift=s.name, shift_spec=s.to_dict(), reference=None if is_ref else ref_spec.name,
                metrics=metrics, drop={} if is_ref else {m_: metrics[m_] - ref_metrics[m_] for m_ in metrics},
                num_samples=res.num_samples, skipped_corrupt=res.skipped_corrupt, skipped_files=res.skipped_files[:100],
                weights_source=_weights_source(name, checkpoint, pretrained),
                dataset_info=ds.describe(), device=res.device, batch_size=batch_size, world_size=res.world_size,
                duration_s=res.duration_s, images_per_s=res.images_per_s,
                forward_images_per_s=res.num_samples * len(todo) / res.duration_s if res.duration_s else None,
            )
            assert rec["key"] == k, "record key and skip key disagree"
            new.append(rec)
        if rstore and rank == 0:
            rstore.append(new)  # only now: the model's pass is complete
        by_key = {r["key"]: r for r in new}
        out += [by_key.get(k) or stored[k] for _, k in keyed]
        computed += len(new)
        reused += len(keyed) - len([k for _, k in keyed if k in by_key])
    if skipped:
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        say(f"skipped {len(skipped)} model(s) whose classifier does not fit the classes of {ds_name} ({shown})")
    return RunSummary(out, computed, reused, time.perf_counter() - t0, images, ds_name)


def _weights_source(name: str | nn.Module, checkpoint: str | None, pretrained: bool) -> str:
    if isinstance(name, nn.Module):
        return "module passed by the caller"
    return str(checkpoint) if checkpoint else ("published weights" if pretrained else "random init")


def get_shift_or_fallback(spec: ShiftSpec, fallbacks: dict[str, str], ds: Any) -> ShiftSpec:
    """The protocol's replacement for ``spec`` on datasets without cached style renderings."""
    from . import get_shift

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
    from . import get_shift

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

"""The cross-domain protocol: a model trained on each of two domains, evaluated on both.

The shape of the paper's Table 6 (Cityscapes <-> GTA5): four results per model, ``A->A``, ``A->B``,
``B->B``, ``B->A``. It is generic over the pair of domains and the task: a :class:`Domain` says how
to get the model trained on it and its test set, and an evaluate function (one per task) turns a
model and a test set into metrics. :func:`cross_domain` runs the 2x2 and writes one record per
cell (``protocol="cross-domain"``, ``train_domain``, ``test_domain``). A cross cell ``A->B`` has
``reference = "A"``: the test domain of its row's in-domain cell ``A->A`` (the same model on its
own domain's test set), and ``drop`` = cross minus in-domain for every metric, ``m(A->B) -
m(A->A)`` (so an accuracy or mIoU drop is negative, an error drop positive; the results tables
print it as a degradation). This is the reading :mod:`dgbench.results.frame` uses to find a
row's reference (same train domain, test domain = ``reference``). In-domain cells have
``reference=None`` and ``drop={}``.

:func:`run_cross_domain` is the classification instance on the built-in digits pair
(``digits`` <-> ``typeset-digits``) with the shipped checkpoints, evaluated by the engine; the
segmentation area calls :func:`cross_domain` with its own domains and evaluate function.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..config import results_dir
from ..errors import DgbenchError
from ..results.record import new_record, record_key
from ..results.store import ResultStore

PROTOCOL = "cross-domain"
# The built-in pair: the real domain first, as Cityscapes is first in Table 6.
DIGITS_PAIR: tuple[str, str] = ("digits", "typeset-digits")
# What `dgbench run --protocol cross-domain --dataset NAME` accepts: name -> (task, the pair).
# Either domain of a built-in pair names the pair.
CROSS_DOMAIN_DATASETS: dict[str, tuple[str, tuple[str, str]]] = {
    "digits": ("classification", DIGITS_PAIR),
    "typeset-digits": ("classification", DIGITS_PAIR),
    "digit-scenes": ("segmentation", ("digit-scenes", "typeset-digit-scenes")),
    "typeset-digit-scenes": ("segmentation", ("digit-scenes", "typeset-digit-scenes")),
    "cityscapes-gta5": ("segmentation", ("cityscapes", "gta5")),
}


def cross_domain_pairs() -> str:
    """One line naming every cross-domain dataset and its pair, for messages."""
    seen: dict[tuple[str, str], str] = {}
    for name, (_, pair) in CROSS_DOMAIN_DATASETS.items():
        seen.setdefault(pair, name)
    return "; ".join(f"{name} ({' <-> '.join(pair)})" for pair, name in seen.items())


def cross_domain_dataset(name: str) -> tuple[str, tuple[str, str]]:
    """``(task, pair)`` of a cross-domain dataset name; unknown names get suggestions."""
    from ..errors import UnknownNameError

    if name not in CROSS_DOMAIN_DATASETS:
        err = UnknownNameError("cross-domain dataset", name, CROSS_DOMAIN_DATASETS)
        raise DgbenchError(f"{err} The cross-domain protocol runs on: {cross_domain_pairs()}")
    return CROSS_DOMAIN_DATASETS[name]


@dataclass
class Evaluation:
    """What a task's evaluate function returns for one (model, test set)."""

    metrics: dict[str, float]  # percentages, e.g. {"top1_acc": .., "top1_err": ..} or {"miou": ..}
    num_samples: int
    duration_s: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)  # any further record fields


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
) -> list[dict[str, Any]]:
    """The 2x2 for one model: records in the order A->A, A->B, B->B, B->A.

    A cell already in ``store`` under the same record key (same model, weights, test data,
    preprocessing, train/test domains) is reused unless ``force``; new records are appended to
    ``store`` once all four cells are known, so an interrupted run writes nothing partial.
    ``record_fields`` adds fields to every record (identity fields such as ``seed`` included).
    """
    if len(domains) != 2 or domains[0].name == domains[1].name:
        raise DgbenchError(f"the cross-domain protocol needs two different domains, got {[d.name for d in domains]}")
    extra = dict(record_fields or {})
    done = store.completed_keys(PROTOCOL) if store is not None and not force else set()
    models: dict[str, nn.Module] = {}
    results: dict[tuple[str, str], dict[str, Any]] = {}
    fresh: set[tuple[str, str]] = set()  # cells computed in this call
    cells = [(train, test) for train in domains for test in (train, *[d for d in domains if d is not train])]
    for train, test in cells:
        if train.name not in models:
            models[train.name] = train.load_model()
        model = models[train.name]
        ds = _dataset_of(test, model)
        base = dict(
            task=task, protocol=PROTOCOL, model=model_name,
            model_kwargs=getattr(model, "variant_kwargs", {}) or {},
            weights_sha256=getattr(model, "weights_sha256", None),
            dataset=getattr(ds, "name", test.name), dataset_fingerprint=_fingerprint(ds),
            train_domain=train.name, test_domain=test.name, shift=None, shift_spec=None,
            preprocessing=preprocessing(model, ds) if preprocessing else None,
            **extra,
        )
        key = record_key(base)
        stored = store.find(key, PROTOCOL) if key in done and store is not None else None
        if stored is not None:
            results[(train.name, test.name)] = stored
            continue
        ev = evaluate(model, ds)
        results[(train.name, test.name)] = dict(
            base, metrics=dict(ev.metrics), num_samples=ev.num_samples, duration_s=ev.duration_s,
            device=ev.device, dataset_info=_describe(ds), **ev.extra,
        )
        fresh.add((train.name, test.name))
    out: list[dict[str, Any]] = []
    for train, test in cells:
        cell = (train.name, test.name)
        rec = results[cell]
        if cell in fresh:  # finish new records: reference and drop need the in-domain cell
            if train.name != test.name:
                ref = results[(train.name, train.name)]["metrics"]
                rec["reference"] = train.name
                rec["drop"] = {k: v - ref[k] for k, v in rec["metrics"].items() if k in ref}
            else:
                rec["reference"], rec["drop"] = None, {}
            rec = new_record(**rec)
        out.append(rec)
    new = [r for (tr, te), r in zip([(a.name, b.name) for a, b in cells], out) if (tr, te) in fresh]
    if store is not None and new:
        store.append(new)
    return out


def _fingerprint(ds: Any) -> str | None:
    fp = getattr(ds, "fingerprint", None)
    return fp() if callable(fp) else None


def _describe(ds: Any) -> dict[str, Any] | None:
    d = getattr(ds, "describe", None)
    return d() if callable(d) else None


# ----------------------------------------------------------------------------- classification
def classification_evaluate(device: str = "cpu", batch_size: int = 256, progress: bool = False) -> EvaluateFn:
    """An evaluate function for classifiers: the engine's clean ("origin") pass, top-1 in percent."""

    def evaluate(model: nn.Module, ds: Any) -> Evaluation:
        from ..engine import EngineConfig
        from ..engine import evaluate as engine_evaluate
        from . import get_shift

        cfg = EngineConfig(device=device, batch_size=batch_size, workers=0, progress=progress,
                           description=f"{getattr(model, 'dgbench_name', 'model')} on {getattr(ds, 'name', '?')}")
        start = time.perf_counter()
        res = engine_evaluate(model, ds, [get_shift("origin")], config=cfg)
        counts = res.counts["origin"]
        acc = 100.0 * counts.correct[1] / counts.n if counts.n else float("nan")
        return Evaluation(
            metrics={"top1_acc": acc, "top1_err": 100.0 - acc},
            num_samples=res.num_samples, duration_s=time.perf_counter() - start, device=res.device,
            extra={"batch_size": batch_size, "skipped_corrupt": res.skipped_corrupt},
        )

    return evaluate


def digits_domains(model: str, pair: Sequence[str] = DIGITS_PAIR) -> list[Domain]:
    """The built-in pair for small ``model``: shipped checkpoints and test splits."""
    from ..data.base import Preprocess, build_dataset
    from ..models.small import load_builtin

    def loader(domain: str) -> Callable[[], nn.Module]:
        return lambda: load_builtin(model, domain)

    def test_set(domain: str) -> Callable[[nn.Module], Any]:
        return lambda m: build_dataset(domain, split="test", preprocess=Preprocess.from_cfg(m.pretrained_cfg))

    return [Domain(d, loader(d), test_set(d)) for d in pair]


def _digits_preprocessing(model: nn.Module, ds: Any) -> dict[str, Any]:
    cfg = model.pretrained_cfg  # type: ignore[attr-defined]
    return {**ds.preprocess.to_dict(), "mean": list(cfg.mean), "std": list(cfg.std)}


def run_cross_domain(
    model: str | Sequence[str] = "ibn_a",
    dataset: str = "digits",
    *,
    results: str | os.PathLike | None = None,
    store: bool = True,
    force: bool = False,
    device: str = "cpu",
    batch_size: int = 256,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Cross-domain classification on the built-in digits pair; records for every model, 4 each.

    Args:
        model: a name or alias (``ibn_a`` means ``small_resnet_ibn_a`` here), ``all`` (every
            small variant), a glob (``small_resnet_ibn_*``), or a list of names.
        dataset: either domain of the pair (``digits`` or ``typeset-digits``); the pair is the same.
        results: results directory (default ``--results``/``$DGBENCH_RESULTS``/``./results``);
            records go to ``<results>/cross-domain.jsonl``. ``store=False`` writes nothing.
    """
    from ..models.small import SMALL_MODELS, small_name_for

    if dataset not in DIGITS_PAIR:
        raise DgbenchError(
            f"the built-in cross-domain classification runs on {' <-> '.join(DIGITS_PAIR)}, not {dataset!r} "
            "(the segmentation pairs: dgbench.protocols.segmentation.run_builtin_scenes and "
            "run_cross_domain_segmentation, or `dgbench run --protocol cross-domain --dataset digit-scenes|cityscapes-gta5`)"
        )
    names = _small_models(model, SMALL_MODELS, small_name_for)
    rstore = ResultStore(results_dir(results)) if store else None
    evaluate = classification_evaluate(device=device, batch_size=batch_size, progress=progress)
    out: list[dict[str, Any]] = []
    for name in names:
        out += cross_domain(
            name, digits_domains(name), evaluate, task="classification", store=rstore, force=force,
            preprocessing=_digits_preprocessing, record_fields={"precision": "fp32", "weights_source": "builtin"},
        )
    return out


def _small_models(spec: str | Sequence[str], known: Sequence[str], to_small: Callable[[str], str]) -> list[str]:
    import fnmatch

    if not isinstance(spec, str):
        return [to_small(s) for s in spec]
    if spec == "all":
        return list(known)
    if any(c in spec for c in "*?["):
        hits = [n for n in known if fnmatch.fnmatch(n, spec)]
        if not hits:
            raise DgbenchError(f"no small model matches {spec!r} (known: {', '.join(known)})")
        return hits
    name = to_small(spec)
    if name not in known:
        raise DgbenchError(f"{spec!r} is not a small digits model; the cross-domain digits checkpoints exist for {', '.join(known)}")
    return [name]


def cross_domain_table(records: Sequence[dict[str, Any]], metric: str = "top1_acc", title: str | None = None):  # -> rich Table
    """Rows = models x train domain, columns = test domains: ``metric`` with the drop in brackets."""
    from rich.table import Table

    domains: list[str] = []
    for r in records:
        for d in (r["train_domain"], r["test_domain"]):
            if d not in domains:
                domains.append(d)
    table = Table(title=title or f"cross-domain {metric} (%), in brackets cross minus in-domain (same model)")
    table.add_column("model")
    table.add_column("train")
    for d in domains:
        table.add_column(f"test {d}", justify="right")
    cells = {(r["model"], r["train_domain"], r["test_domain"]): r for r in records}
    models = list(dict.fromkeys(r["model"] for r in records))
    for m in models:
        for tr in domains:
            row = [m, tr]
            for te in domains:
                r = cells.get((m, tr, te))
                if r is None:
                    row.append("-")
                    continue
                v = r["metrics"][metric]
                drop = r.get("drop") or {}
                row.append(f"{v:.2f}" + (f" ({drop[metric]:+.2f})" if metric in drop else ""))
            table.add_row(*row)
    return table

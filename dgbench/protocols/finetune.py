"""The fine-tune protocol (the paper's Table 8): a model of one domain, fine-tuned on a fraction of the other.

For a segmentation pair (``[pairs.NAME]``), the model trained on the *source* domain is fine-tuned
on a fraction of the *target* domain's train split and evaluated on the target's test split:

* source and target: on a pair with shipped checkpoints the source is the pair's second domain
  (``typeset-digit-scenes`` -> ``digit-scenes``: synthetic -> real, as GTA5 -> Cityscapes); on a
  pair of your checkpoints it is the domain whose checkpoint you pass (``--checkpoint-b GTA5.pth``
  fine-tunes on Cityscapes, ``--checkpoint-a`` on GTA5);
* subsets: per seed, one order of the target train split (:func:`subset_order`, a hash of
  (seed, index), the same on every machine and NumPy version); the fraction ``f`` takes its first
  ``ceil(f * n)`` images, so a smaller fraction's subset lies inside every larger one of the same
  seed, and ``1.0`` is the whole split;
* recipe: the paper's (:data:`PAPER_RECIPE`, as :func:`dgbench.train.segmentation.train_segmentation`
  trains from scratch) unless the protocol's ``recipes.<pair>`` table overrides keys. Its
  ``iterations`` is the schedule policy: ``"scaled"`` (default) runs ``epochs`` epochs *of the
  subset*, so 10 % gets a tenth of the iterations of 100 % (the paper says only that it
  fine-tunes with its recipe; the recipe is defined in epochs); an integer fixes the number of
  iterations whatever the fraction (equal compute);
* a fraction ``0`` row (``source only``) is the source model evaluated on the target before any
  fine-tuning: Table 7's "source only" number and the curves' starting point;
* seeds: each seed draws its own subsets and trains with its own data order and augmentation;
  the results tables aggregate seeds into mean ± standard error.

Records (``protocol`` = this protocol's name) have ``train_domain`` = source, ``test_domain`` =
target, ``fraction``, and in their identity the subset (``subset``: fraction, size, the train
split's fingerprint, the selection rule), the recipe (``preprocessing.recipe``, beside the
inference settings) and the *source* weights' sha256; the seed's own subset hash, the
fine-tuned weights' hash and the training losses are recorded beside. Each (model, seed, fraction)
is stored as soon as it is measured, and an interrupted fine-tune resumes from its checkpoint
(``<results>/finetune-runs/<model>/<key>/``), so a run can be stopped anywhere and started again.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..config import results_dir
from ..data.base import indices_sha256
from ..errors import CheckpointError, DgbenchError, SpecError
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..runtime import Runtime
from .base import RunRequest, RunSummary, reject_options
from .cross_domain import CHECKPOINT_OPTIONS, CrossDomainProtocol
from .cross_domain_cells import _call
from .measure import MeasureLoop
from .specs import PairSpec, registry

SELECTION = "sha256(seed/index) order, nested prefixes"  # how subsets are drawn (in the identity)
SOURCE_ONLY = 0.0
# The paper's recipe (Section 4.2), as train_segmentation's defaults; "scaled": epochs of the subset.
PAPER_RECIPE: dict[str, Any] = dict(
    epochs=80, batch_size=16, base_lr=0.01, lr_power=0.9, momentum=0.9, weight_decay=1e-4, head_lr_mult=1.0,
    crop_size=[713, 713], scale_range=[0.5, 2.0], aspect_range=[0.8, 1.25], mirror=True, iterations="scaled",
)
_NUM = (int, float)
RECIPE_TYPES: dict[str, tuple[type, ...]] = {
    "epochs": (int,), "batch_size": (int,), "base_lr": _NUM, "lr_power": _NUM, "momentum": _NUM,
    "weight_decay": _NUM, "head_lr_mult": _NUM, "crop_size": (list,), "scale_range": (list,),
    "aspect_range": (list,), "mirror": (bool,), "iterations": (str, int),
}
OPTIONS = ("fractions", "seeds", "roots", "eval_mode", "crop", "stride", "flip", "eval_scale",
           "save_predictions", "gta5_mismatch", "gta5_split_file")


# ----------------------------------------------------------------------------- subsets
def parse_fractions(value: Any) -> list[float]:
    """``"0.1,0.2"`` / ``[0.1, 0.2]`` -> sorted unique floats in (0, 1]; a clear error otherwise."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[float] = []
    for item in items:
        text = str(item).strip()
        try:
            f = float(text)
        except ValueError:
            f = math.nan
        if isinstance(item, bool) or not (0.0 < f <= 1.0):
            raise DgbenchError(f"--fractions {text!r}: a fraction of the target's train split must be a number "
                               "in (0, 1], e.g. --fractions 0.1,0.2,0.3,1.0")
        out.append(f)
    if not out:
        raise DgbenchError("--fractions: give at least one fraction in (0, 1], e.g. 0.1,0.2,0.3,1.0")
    return sorted(set(out))


def parse_seeds(value: Any) -> list[int]:
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        seeds = [int(str(s).strip()) for s in items]
    except ValueError:
        raise DgbenchError(f"--seeds {value!r}: expected integers, e.g. --seeds 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise DgbenchError(f"--seeds {value!r}: expected non-negative integers, e.g. --seeds 0,1,2")
    return list(dict.fromkeys(seeds))


def subset_size(fraction: float, n: int) -> int:
    """``ceil(fraction * n)`` (at least one image; 1.0 -> n), robust to 0.3 * 400 = 120.00000000000001."""
    return min(n, max(1, math.ceil(round(fraction * n, 9))))


def subset_order(n: int, seed: int) -> list[int]:
    """The order in which seed ``seed`` takes the ``n`` train images: by sha256 of ``"seed/index"``."""
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}/{i}".encode()).digest())


def nested_subsets(n: int, fractions: Sequence[float], seed: int) -> dict[float, list[int]]:
    """``{fraction: sorted indices}``: prefixes of one order, so smaller subsets nest in larger ones."""
    order = subset_order(n, seed)
    return {f: sorted(order[: subset_size(f, n)]) for f in fractions}


# ----------------------------------------------------------------------------- recipe and weights
def resolve_recipe(spec_recipes: dict[str, Any], pair: PairSpec) -> dict[str, Any]:
    """The paper's recipe, or the built-in scenes' (``BUILTIN_SCENE_RECIPE``), with the spec's overrides."""
    recipe = dict(PAPER_RECIPE)
    if pair.weights == "builtin":
        from ..train.segmentation import BUILTIN_SCENE_RECIPE

        recipe.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in BUILTIN_SCENE_RECIPE.items() if k in RECIPE_TYPES})
    recipe.update(spec_recipes.get(pair.name, {}))
    return recipe


def train_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """``train_segmentation`` keywords of a recipe (``iterations``: None when scaled)."""
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recipe.items()}
    kw["iterations"] = None if recipe["iterations"] == "scaled" else int(recipe["iterations"])
    return kw


def check_classes(net: nn.Module, state: dict[str, Any], path: str, num_classes: int, target: str) -> None:
    """A checkpoint whose classifier has another number of classes than the target: one clear line."""
    for key, want in net.state_dict().items():
        got = state.get(key)
        if got is None or not hasattr(got, "shape") or tuple(got.shape) == tuple(want.shape):
            continue
        if want.ndim >= 1 and want.shape[0] == num_classes and tuple(got.shape[1:]) == tuple(want.shape[1:]):
            raise DgbenchError(f"{path}: a {got.shape[0]}-class model ({key} is {tuple(got.shape)}), but {target} has "
                               f"{num_classes} classes; fine-tune a checkpoint trained for {num_classes} classes")


def load_source(name: str, path: str, num_classes: int, target: str, kwargs: dict[str, Any]) -> nn.Module:
    """The source-domain model from ``path``, checked against the target's classes."""
    from ..models.registry import create_model
    from ..models.weights import load_state_dict_strict
    from ..train.segmentation import read_init_weights

    state, sha = read_init_weights(Path(path))
    net = create_model(name, num_classes=num_classes, **kwargs)
    check_classes(net, state, path, num_classes, target)
    load_state_dict_strict(net, state, path, new_head_ok=False)
    net.weights_sha256, net.weights_source = sha, path  # type: ignore[assignment]
    return net.eval()


# ----------------------------------------------------------------------------- the protocol kind
class FinetuneProtocol(CrossDomainProtocol):
    """``kind = "finetune"``: ``pairs`` (segmentation pairs), ``fractions``, ``seeds``, ``recipes``."""

    kind = "finetune"
    fields = {"pairs": list, "fractions": list, "seeds": list, "recipes": dict}
    required = ("pairs",)

    @classmethod
    def validate(cls, spec: Any, reg: Any) -> None:
        super().validate(spec, reg)
        where = f"{spec.source}: protocols.{spec.name}"
        for p in spec.params["pairs"]:
            if reg.pairs[p].task != "segmentation":
                raise SpecError(f"{where}.pairs: {p!r} is a {reg.pairs[p].task} pair; fine-tuning runs on segmentation pairs")
        try:
            parse_fractions(spec.params.get("fractions", [1.0]))
            parse_seeds(spec.params.get("seeds", [0]))
        except DgbenchError as exc:
            raise SpecError(f"{where}: {exc}") from None
        for pair, recipe in spec.params.get("recipes", {}).items():
            if pair not in spec.params["pairs"] or not isinstance(recipe, dict):
                raise SpecError(f"{where}.recipes.{pair}: must be a table for one of the protocol's pairs")
            for key, value in recipe.items():
                if key not in RECIPE_TYPES:
                    raise SpecError(f"{where}.recipes.{pair}.{key}: unknown recipe key (known: {', '.join(RECIPE_TYPES)})")
                if isinstance(value, bool) != (bool in RECIPE_TYPES[key]) or not isinstance(value, RECIPE_TYPES[key]):
                    raise SpecError(f"{where}.recipes.{pair}.{key}: {value!r} has the wrong type")
                if isinstance(value, list) and not (len(value) == 2 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)):
                    raise SpecError(f"{where}.recipes.{pair}.{key}: {value!r}: expected two positive numbers")
            it = recipe.get("iterations", "scaled")
            if it != "scaled" and not (isinstance(it, int) and it > 0):
                raise SpecError(f"{where}.recipes.{pair}.iterations: {it!r}: \"scaled\" or a positive integer")

    def conditions(self) -> list[str]:
        fr = parse_fractions(self.spec.params.get("fractions", [1.0]))
        return [f"{p}: fractions {', '.join(f'{f:g}' for f in fr)}" for p in self.spec.params["pairs"]]

    def direction(self, pair: PairSpec, req: RunRequest) -> tuple[str, str, str | None]:
        """``(source, target, checkpoint option)``: see the module docstring."""
        if pair.weights == "builtin":
            return pair.domains[1], pair.domains[0], None
        given = [k for k in CHECKPOINT_OPTIONS if req.options.get(k)]
        if len(given) != 1:
            raise DgbenchError(f"the {self.name} protocol on {pair.name} fine-tunes one source model: pass either "
                               f"--checkpoint-b (trained on {pair.domains[1]}, fine-tuned on {pair.domains[0]}) or "
                               f"--checkpoint-a (trained on {pair.domains[0]}, fine-tuned on {pair.domains[1]})")
        src = pair.domains[CHECKPOINT_OPTIONS.index(given[0])]
        path = Path(req.options[given[0]])
        if not path.is_file():
            raise DgbenchError(f"--{given[0].replace('_', '-')} {path}: no such file")
        return src, next(d for d in pair.domains if d != src), given[0]

    def check_flags(self, req: RunRequest, pair: PairSpec) -> None:
        allowed = OPTIONS + (CHECKPOINT_OPTIONS if pair.weights == "checkpoints" else ())
        reject_options(req, self.name, allowed, pair=pair.name)
        unused = [f for f, given in (("--shifts", req.shifts), ("--subset", req.subset), ("--checkpoint", req.checkpoint),
                                     ("--skip-corrupt", req.skip_corrupt)) if given]
        if unused:
            raise DgbenchError(f"{', '.join(unused)}: not used by the {self.name} protocol")

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        """The published rows' pair, models, fractions and seeds ``0 .. n_runs - 1``."""
        domains = set(rows["train_domain"]) | set(rows["test_domain"])
        pair = next((p for p in registry().pairs.values() if set(p.domains) == domains), None)
        if pair is None or pair.weights != "builtin":
            raise DgbenchError(f"{self.name}: re-running needs the domains' data and checkpoints "
                               f"({', '.join(sorted(domains))}); run the protocol, then `dgbench check` without --rerun")
        fractions = sorted({float(f) for f in rows["fraction"]} - {SOURCE_ONLY})
        runs = max(int(n) for n in rows["n_runs"])
        return RunRequest(model=sorted(set(rows["model"])), dataset=pair.name,
                          options={"fractions": fractions, "seeds": list(range(runs))})

    def run(self, req: RunRequest, rt: Runtime) -> RunSummary:
        from ..data.seg_base import CLASS_NAMES
        from .cross_domain_segmentation import SEGMENTATION, Inference

        pair = self.pick_pair(req)
        if pair.task != "segmentation":
            raise DgbenchError(f"the {self.name} protocol fine-tunes segmentation models; {pair.name} is a {pair.task} pair")
        self.check_flags(req, pair)
        source, target, ckpt_opt = self.direction(pair, req)
        fractions = parse_fractions(req.options.get("fractions") or self.spec.params.get("fractions", [1.0]))
        seeds = parse_seeds(req.options.get("seeds") or self.spec.params.get("seeds", [0]))
        recipe = resolve_recipe(self.spec.params.get("recipes", {}), pair)
        names = SEGMENTATION.models(req, pair)
        if not names:
            raise DgbenchError(f"no model matches --model {req.model!r}")
        test_set = SEGMENTATION.test_set(target, None, pair, req)
        num_classes = len(getattr(test_set, "class_names", CLASS_NAMES))
        # The target's train split exactly as the trainer indexes it (subset indices refer to it).
        train_set = train_job(req, rt, pair, target, names[0], recipe, num_classes).train_dataset()
        n = len(train_set)
        for f in fractions:
            k = subset_size(f, n)
            if k < recipe["batch_size"]:
                raise DgbenchError(f"--fractions {f:g}: {k} of the {n} {target} train images, fewer than one batch of "
                                   f"{recipe['batch_size']}; use a larger fraction (or a recipe with a smaller batch_size)")
        store = ResultStore(results_dir(req.results)) if req.store else None
        loop = MeasureLoop(store, self.name, req.force, rt.is_main)
        ctx = _Context(self.name, req, rt, pair, source, target, recipe, test_set, train_set, num_classes,
                       Inference.from_options(req.options).record(), SEGMENTATION.evaluate(req, rt), loop)
        t0 = time.perf_counter()
        records: list[dict[str, Any]] = []
        for name in names:
            path = str(req.options[ckpt_opt]) if ckpt_opt else _builtin_source(name, source)
            model = load_source(name, path, num_classes, target, req.model_kwargs)
            records += ctx.measure(name, path, model, fractions, seeds)
        return RunSummary(records, loop.computed, loop.reused, time.perf_counter() - t0,
                          dataset=pair.name, kind=self.kind)


def _builtin_source(name: str, source: str) -> str:
    from ..builtin.checkpoints import builtin_scene_checkpoints

    found = builtin_scene_checkpoints(name)
    if source not in found:
        raise CheckpointError(f"no shipped {name} checkpoint trained on {source}")
    return found[source]


def train_job(req: RunRequest, rt: Runtime, pair: PairSpec, target: str, name: str, recipe: dict[str, Any],
              num_classes: int, **settings: Any) -> Any:
    """The :class:`~dgbench.train.segmentation.SegTrainJob` that fine-tunes ``name`` on ``target``
    with ``recipe`` in the run's precision (``settings``: the subset, seed, start weights, folder)."""
    from ..runtime import default_workers
    from ..train.segmentation import SegTrainJob

    workers = req.workers if req.workers is not None else (0 if pair.weights == "builtin" else default_workers(rt.device))
    return SegTrainJob.build(
        target, name, root=(req.options.get("roots") or {}).get(target), model_kwargs=req.model_kwargs,
        num_classes=num_classes, precision=rt.precision, num_workers=workers, progress=req.progress,
        gta5_mismatch=req.options.get("gta5_mismatch") or "error", gta5_split_file=req.options.get("gta5_split_file"),
        **train_kwargs(recipe), **settings)


class _Context:
    """One run's fixed parts; :meth:`measure` makes (or reuses) one model's records."""

    def __init__(self, protocol: str, req: RunRequest, rt: Runtime, pair: PairSpec, source: str, target: str,
                 recipe: dict[str, Any], test_set: Any, train_set: Any, num_classes: int, inference: dict[str, Any],
                 evaluate: Any, loop: MeasureLoop) -> None:
        self.protocol, self.req, self.rt, self.pair, self.source, self.target = protocol, req, rt, pair, source, target
        self.recipe, self.test_set, self.train_set, self.num_classes = recipe, test_set, train_set, num_classes
        self.inference, self.evaluate, self.loop = inference, evaluate, loop
        self.train_fp = _call(train_set, "fingerprint")
        self.test_fp = _call(test_set, "fingerprint")

    def identity(self, name: str, model: nn.Module, fraction: float, seed: int | None) -> dict[str, Any]:
        n = len(self.train_set)
        k = subset_size(fraction, n) if fraction > 0 else 0
        prep: dict[str, Any] = {"inference": self.inference}
        if fraction > 0:
            # "amp" (any precision but fp32) as in records before the precision was the runtime's: same keys
            prep["recipe"] = {**self.recipe, "amp": self.rt.precision != "fp32"}
        return dict(
            task="segmentation", protocol=self.protocol, model=name, model_kwargs=dict(self.req.model_kwargs),
            weights_sha256=model.weights_sha256, weights_source=model.weights_source,
            dataset=getattr(self.test_set, "name", self.target), dataset_fingerprint=self.test_fp,
            train_domain=self.source, test_domain=self.target, shift=None, shift_spec=None, fraction=fraction,
            subset={"fraction": fraction, "images": k, "of": n, "split": "train", "train_fingerprint": self.train_fp,
                    "selection": SELECTION},
            preprocessing=prep, precision=self.rt.precision, limit=self.req.limit, seed=seed,
        )

    def measure(self, name: str, path: str, model: nn.Module, fractions: list[float],
                seeds: list[int]) -> list[dict[str, Any]]:
        """The source-only record, then one per (seed, fraction): each stored as soon as it is
        measured, so an interrupted run keeps what it finished."""
        out = []
        jobs = [(SOURCE_ONLY, None, None)] + [(f, s, sub) for s in seeds
                                              for f, sub in nested_subsets(len(self.train_set), fractions, s).items()]
        for fraction, seed, indices in jobs:
            ident = self.identity(name, model, fraction, seed)
            out += self.loop.unit([record_key(ident)], lambda missing, stored, ident=ident, seed=seed, indices=indices:
                                  [self.record(name, path, model, ident, missing[0], seed, indices)])[0]
        return out

    def record(self, name: str, path: str, model: nn.Module, ident: dict[str, Any], key: str, seed: int | None,
               indices: list[int] | None) -> dict[str, Any]:
        """Fine-tune on ``indices`` (none: the source model as it is) and evaluate on the target."""
        extra: dict[str, Any] = {}
        net = model
        if indices is not None:
            net, extra = self.finetune(name, path, key, indices, seed)  # type: ignore[arg-type]
        net.train_domain = self.source  # type: ignore[attr-defined]
        ev = self.evaluate(net, self.test_set)
        return new_record(kind="finetune", **ident, metrics=dict(ev.metrics), num_samples=ev.num_samples, duration_s=ev.duration_s,
                          device=ev.device, dataset_info=_call(self.test_set, "describe"),
                          world_size=self.rt.world_size, **ev.extra, **extra)

    def finetune(self, name: str, path: str, key: str, indices: list[int], seed: int) -> tuple[nn.Module, dict[str, Any]]:
        from ..models.registry import create_model
        from ..train.segmentation import run_training

        req = self.req
        work = results_dir(req.results) / "finetune-runs" / name / key
        t0 = time.perf_counter()
        job = train_job(req, self.rt, self.pair, self.target, name, self.recipe, self.num_classes, out_dir=work,
                        init_weights=path, indices=indices, seed=seed, resume=not req.force)
        r = run_training(job, self.rt)
        if r.weights is None:
            raise DgbenchError(f"fine-tuning {name} stopped at iteration {r.iteration} of {r.total_iterations}; "
                               "run again to resume it")
        net = create_model(name, pretrained=str(r.weights), num_classes=self.num_classes, **req.model_kwargs)
        return net, {"finetune": {
            "subset_sha256": indices_sha256(indices), "train_images": len(indices), "iterations": r.total_iterations,
            "resumed_from": r.resumed_from, "final_loss": r.losses[-1] if r.losses else None,
            "finetuned_sha256": net.weights_sha256, "source_checkpoint": path, "work_dir": str(work),
            "train_duration_s": time.perf_counter() - t0,
        }}

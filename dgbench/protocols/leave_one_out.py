"""The leave-one-domain-out protocol kind (DomainBed's experiment): train on all domains but one, test on it.

For a multi-domain dataset (``digits-dg`` built in; ``pacs``, ``vlcs``, ``office-home``,
``terra-incognita``, ``domainnet`` or ``folder-domains`` from ``--data``), every model, algorithm,
trial and hyperparameter set trains once per held-out domain on the other domains' "in" splits
and is evaluated on every domain (:mod:`dgbench.train.domain_generalization`). With
``leave_one_out_runs`` (default true) it also trains once per *pair* of held-out domains: the runs
DomainBed's leave-one-domain-out selection validates on. Selection and tables are functions over
the stored records (:mod:`dgbench.results.model_selection`, :mod:`dgbench.results.leave_one_out`).

* trials: each trial draws its own 80/20 splits (seeded, nested, stable:
  :func:`dgbench.data.domain_folders.holdout_split`) and its own hyperparameter draws;
* hyperparameter sets: set 0 is the algorithm's defaults, sets 1.. seeded random draws
  (:func:`dgbench.train.dg_algorithms.hparams`), each a record;
* weights: ImageNet-initialized (``--pretrained``, the default) where the zoo has weights; the
  built-in set's small models start from scratch (their shipped weights have seen ``digits``, a
  domain that is held out here); a record's ``weights_sha256`` is the initial weights' digest as
  the registry knows it before downloading (:func:`initial_weights_id`), None from scratch;
* one record per (model, algorithm, held-out domains, trial, hparam set), stored as soon as its
  run ends; a run killed midway resumes from ``<results>/leave-one-out-runs/<model>/<key>/``.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from pathlib import Path
from typing import Any

from ..config import results_dir
from ..errors import DgbenchError, SpecError
from ..results.record import new_record, record_key
from ..results.store import ResultStore
from ..runtime import Runtime
from .base import Protocol, RunRequest, RunSummary, reject_options
from .measure import MeasureLoop

OPTIONS = ("held_out", "trials", "hparam_sets", "algorithms")
RECIPE_KEYS = {"steps": int, "checkpoint_freq": int, "eval_batch_size": int, "image_size": int}
# DomainBed's: 5000 steps, evaluated every 300, images resized to 224 (the built-in set keeps its own size)
DEFAULT_RECIPE = {"steps": 5000, "checkpoint_freq": 300, "eval_batch_size": 128, "image_size": 224}
ZOO_MODELS = ("resnet18", "resnet18_ibn_a", "resnet18_ibn_b", "resnet50", "resnet50_ibn_a", "resnet50_ibn_b")


def _ints(value: Any, flag: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise DgbenchError(f"--{flag} {value!r}: expected a positive integer")
    return n


def _given(options: dict[str, Any], key: str, default: Any) -> Any:
    value = options.get(key)
    return default if value is None else value


def _names(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(i).strip() for i in items if str(i).strip()]


def load_domains(dataset: str, root: Any, size: int = 224) -> Any:
    """The :class:`~dgbench.data.domain_folders.DomainData` of ``dataset``."""
    from ..builtin.domains import DG_SETS
    from ..data.domain_folders import DOMAIN_SETS, GENERIC, load_folder_domains

    if dataset in DG_SETS:
        if root:
            raise DgbenchError(f"--data {root}: {dataset} is built into dgbench and takes no data root")
        from ..builtin.digits_dg import load

        return load()
    if dataset in DOMAIN_SETS or dataset == GENERIC:
        return load_folder_domains(dataset, root, size)
    from ..errors import UnknownNameError

    raise UnknownNameError("multi-domain dataset", dataset, [*DG_SETS, *DOMAIN_SETS, GENERIC])


def model_names(model: Any, builtin: bool, builtin_all: list[str]) -> list[str]:
    """``all``: the protocol's ``builtin_models`` on the built-in set (else every small model), the
    ResNet-18/50 and their IBN-a/b on the others; else the names or globs given, as ``dgbench run``
    reads them elsewhere (:func:`~dgbench.protocols.model_select.resolve_models`; on the built-in set
    short names and globs mean its small models)."""
    from ..builtin.names import SMALL_MODELS, small_name_for
    from ..models.external import is_external
    from .model_select import pick_small, resolve_models

    if model == "all":
        return [small_name_for(m) for m in builtin_all or SMALL_MODELS] if builtin else list(ZOO_MODELS)
    names: list[str] = []
    for m in _names(model):
        if is_external(m):
            raise DgbenchError(f"--model {m}: the leave-one-out protocol trains registry models only "
                               "(`dgbench models` lists them)")
        if builtin:
            globbed = any(c in m for c in "*?[")
            names += pick_small(m, SMALL_MODELS, small_name_for, "small model") if globbed else [small_name_for(m)]
        else:
            names += resolve_models(m, pretrained=False)  # a glob matches every zoo model it names
    return list(dict.fromkeys(names))


def initial_weights_id(model: str) -> str | None:
    """What identifies a zoo model's published initial weights without downloading them: their full
    sha256 where the registry knows it, else the hash prefix of their file name (torch hub's, checked
    when the file is fetched), else their URL or shipped file."""
    from ..models.registry import model_info

    cfg = model_info(model).pretrained_cfg
    return cfg.sha256 or cfg.sha256_prefix or cfg.url or cfg.file


def held_out_sets(domains: tuple[str, ...], tests: list[str], pairs: bool) -> list[tuple[str, ...]]:
    """The single held-out domains asked for, then (for leave-one-domain-out selection) their pairs."""
    sets = [(t,) for t in tests]
    if pairs:
        sets += sorted({tuple(sorted(p)) for p in itertools.combinations(domains, 2) if set(p) & set(tests)},
                       key=lambda p: [domains.index(d) for d in p])
    return sets


class LeaveOneOutProtocol(Protocol):
    """``kind = "leave-one-out"``: ``datasets``, ``builtin_models`` (``--model all`` there), ``algorithms``, ``trials``, ``hparam_sets``,
    ``leave_one_out_runs``, ``recipes`` (per dataset: ``steps``, ``checkpoint_freq``, ``eval_batch_size``)."""

    kind = "leave-one-out"
    fields = {"datasets": list, "builtin_models": list, "algorithms": list, "trials": int, "hparam_sets": int, "leave_one_out_runs": bool,
              "recipes": dict}
    required = ("datasets",)

    @classmethod
    def validate(cls, spec: Any, reg: Any) -> None:
        from ..train.dg_algorithms import algorithm_class

        where = f"{spec.source}: protocols.{spec.name}"
        try:
            for a in spec.params.get("algorithms", ["erm"]):
                algorithm_class(a)
        except DgbenchError as exc:
            raise SpecError(f"{where}.algorithms: {exc}") from None
        for key in ("trials", "hparam_sets"):
            if spec.params.get(key, 1) < 1:
                raise SpecError(f"{where}.{key}: must be a positive integer")
        for ds, recipe in spec.params.get("recipes", {}).items():
            for k, v in (recipe.items() if isinstance(recipe, dict) else [("", None)]):
                if k not in RECIPE_KEYS or not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise SpecError(f"{where}.recipes.{ds}.{k}: a positive integer {', '.join(RECIPE_KEYS)} expected")

    def datasets(self) -> list[str]:
        return list(self.spec.params["datasets"])

    def conditions(self) -> list[str]:
        return ["held-out domain (each in turn)"]

    def settings(self, req: RunRequest) -> dict[str, Any]:
        p, o = self.spec.params, req.options
        # "is not None": a given 0 is the user's (and refused by _ints), not "use the spec's"
        return {"trials": _ints(_given(o, "trials", p.get("trials", 1)), "trials"),
                "hparam_sets": _ints(_given(o, "hparam_sets", p.get("hparam_sets", 1)), "hparam-sets"),
                "algorithms": _names(o.get("algorithms") or p.get("algorithms", ["erm"]))}

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        return RunRequest(model=sorted(set(rows["model"])), dataset=dataset, options={
            "trials": int(rows["n_runs"].max()), "hparam_sets": int(rows["hparam_sets"].max()),
            "algorithms": sorted(set(rows["algorithm"]))})

    def run(self, req: RunRequest, rt: Runtime) -> RunSummary:
        from ..builtin.domains import DG_SETS
        from ..train.dg_algorithms import algorithm_class

        reject_options(req, self.name, OPTIONS)
        unused = [f for f, given in (("--shifts", req.shifts), ("--limit", req.limit), ("--subset", req.subset),
                                     ("--checkpoint", req.checkpoint), ("--skip-corrupt", req.skip_corrupt)) if given]
        if unused:
            raise DgbenchError(f"{', '.join(unused)}: not used by the {self.name} protocol")
        dataset = req.dataset or self.datasets()[0]
        if dataset not in self.datasets():
            raise DgbenchError(f"--dataset {dataset}: the {self.name} protocol runs on {', '.join(self.datasets())}")
        recipe = {**DEFAULT_RECIPE, **self.spec.params.get("recipes", {}).get(dataset, {})}
        data = load_domains(dataset, req.data, recipe["image_size"])
        tests = [data.check_domain(d) for d in _names(req.options.get("held_out") or data.domains)]
        st = self.settings(req)
        for a in st["algorithms"]:
            algorithm_class(a)
        builtin = dataset in DG_SETS
        if builtin:
            recipe.pop("image_size")  # the built-in set has one size (dgbench.builtin.digits_dg.SIZE)
        names = model_names(req.model, builtin, self.spec.params.get("builtin_models", []))
        sets = held_out_sets(data.domains, tests, self.spec.params.get("leave_one_out_runs", True))
        store = ResultStore(results_dir(req.results)) if req.store else None
        loop = MeasureLoop(store, self.name, req.force, rt.is_main)
        job = _Job(self.name, req, rt, data, recipe, builtin, loop)
        t0 = time.perf_counter()
        records = [rec for name in names for algo in st["algorithms"] for trial in range(st["trials"])
                   for h in range(st["hparam_sets"]) for held in sets
                   for rec in job.measure(name, algo, trial, h, held)]
        return RunSummary(records, loop.computed, loop.reused, time.perf_counter() - t0, dataset=dataset, kind=self.kind)


class _Job:
    """One run's fixed parts; :meth:`measure` makes (or reuses) one training's record."""

    def __init__(self, protocol: str, req: RunRequest, rt: Runtime, data: Any, recipe: dict[str, int],
                 builtin: bool, loop: MeasureLoop) -> None:
        self.protocol, self.req, self.rt, self.data, self.recipe, self.builtin, self.loop = \
            protocol, req, rt, data, recipe, builtin, loop
        self.fingerprint = data.fingerprint()
        self._splits: dict[int, Any] = {}

    def splits(self, trial: int) -> Any:
        if trial not in self._splits:
            self._splits[trial] = self.data.splits(trial)
        return self._splits[trial]

    def config(self, name: str, algo: str, trial: int, h: int, held: tuple[str, ...]) -> Any:
        from ..train.dg_algorithms import hparams
        from ..train.domain_generalization import DGTrainConfig

        text = f"{name}/{algo}/{trial}/{h}/{'+'.join(held)}"
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")  # per run, stable
        pretrained = bool(self.req.pretrained and not self.builtin)
        hp = hparams(algo, h, trial, small_images=self.builtin)
        if "freeze_bn" in hp and not pretrained:
            hp["freeze_bn"] = False  # frozen at initialization, BatchNorm would be a fixed identity
        return DGTrainConfig(
            model=name, algorithm=algo, hparams=hp,
            train_domains=tuple(d for d in self.data.domains if d not in held), steps=self.recipe["steps"],
            checkpoint_freq=self.recipe["checkpoint_freq"], seed=seed, num_threads=1 if self.rt.device.type == "cpu" else None,
            pretrained=pretrained, model_kwargs=dict(self.req.model_kwargs),
            eval_batch_size=self.recipe["eval_batch_size"])

    def identity(self, cfg: Any, trial: int, h: int, held: tuple[str, ...]) -> dict[str, Any]:
        from ..data.domain_folders import split_record

        return dict(
            task="classification", protocol=self.protocol, model=cfg.model, model_kwargs=dict(cfg.model_kwargs),
            weights_sha256=initial_weights_id(cfg.model) if cfg.pretrained else None, dataset=self.data.name,
            dataset_fingerprint=self.fingerprint, test_domain="+".join(held), seed=trial,
            subset={"algorithm": cfg.algorithm, "hparams_seed": h, "hparams": cfg.hparams, "held_out": list(held),
                    "splits": split_record(self.splits(trial), trial)},
            preprocessing={"recipe": self.recipe, "size": self.data.size, "train_seed": cfg.seed,
                           "num_threads": cfg.num_threads},
            precision=self.rt.precision, limit=None)

    def work_dir(self, model: str, key: str) -> Path:
        return results_dir(self.req.results) / "leave-one-out-runs" / model / key

    def measure(self, name: str, algo: str, trial: int, h: int, held: tuple[str, ...]) -> list[dict[str, Any]]:
        from ..train.domain_generalization import STATE_FILE

        cfg = self.config(name, algo, trial, h, held)
        ident = self.identity(cfg, trial, h, held)
        key = record_key(ident)
        records, computed = self.loop.unit([key], lambda missing, stored: [self.record(cfg, ident, missing[0])])
        if computed:
            # Only now, the record stored: a run killed before the store's append resumes from the
            # finished state instead of training again. The record keeps what selection needs.
            (self.work_dir(cfg.model, key) / STATE_FILE).unlink(missing_ok=True)
        return records

    def record(self, cfg: Any, ident: dict[str, Any], key: str) -> dict[str, Any]:
        from ..train.domain_generalization import STATE_FILE, train_run

        work = self.work_dir(cfg.model, key)
        if self.req.force and (work / STATE_FILE).is_file():
            (work / STATE_FILE).unlink()  # --force: train again from the start
        self.req.say(f"{cfg.model} / {cfg.algorithm}: held out {ident['test_domain']}, trial {ident['seed']}, "
                     f"hparams {ident['subset']['hparams_seed']}")
        r = train_run(cfg, self.data, self.splits(ident["seed"]), self.rt.device, work)
        held = ident["subset"]["held_out"]
        last = r.evaluations[-1]["acc"]
        return new_record(
            kind="leave-one-out", **ident, metrics={"top1_acc": last[held[0]]["in"]} if len(held) == 1 else {},
            dg_run={"algorithm": cfg.algorithm, "trial": ident["seed"], "hparams_seed": ident["subset"]["hparams_seed"],
                    "hparams": cfg.hparams, "held_out": held, "evaluations": r.evaluations},
            num_samples=sum(len(s["in"]) for d, s in self.splits(ident["seed"]).items() if d not in held),
            duration_s=r.duration_s, device=str(self.rt.device), resumed_from=r.resumed_from,
            init_weights_sha256=r.weights_sha256, dataset_info=self.data.info, world_size=self.rt.world_size)

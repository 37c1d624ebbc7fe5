"""A sweep's grid: models x protocols x datasets x seeds x precisions, from flags or a TOML file.

A TOML grid file::

    [grid]
    models = ["small_resnet", "small_resnet_ibn_*", "timm/resnet18"]   # names, aliases, globs, outside models
    protocols = ["appearance-lite", "sweep-r"]
    datasets = ["digits"]            # omit: each protocol's default dataset
    seeds = [0, 1]
    precisions = ["fp32"]

    [run]                            # what every cell's `dgbench run` gets
    subset = 200
    pretrained = true

    [launcher]                       # how the cells run (flags override)
    name = "slurm"                   # local | multi-gpu | slurm
    [launcher.slurm]                 # submitit's parameters, as submitit names them
    slurm_partition = "gpu"
    timeout_min = 120
    gpus_per_node = 1

Globs and ``all`` are expanded against the zoo when the grid is built, so every cell names one
model. A cell's id hashes what it measures (its axes and the shared run options), so the same
cell of two sweeps is the same cell.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DgbenchError
from ..results.record import fingerprint

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

GRID_AXES = ("models", "protocols", "datasets", "seeds", "precisions")
# The RunRequest fields a sweep passes to every cell (the axes above are per cell). ``options``
# holds what only some kinds read, as RunRequest.options does (leave-one-out: held_out, trials,
# hparam_sets, algorithms; cross-domain: checkpoints); the kind rejects what it does not use.
RUN_OPTIONS = {"subset": int, "limit": int, "batch_size": int, "workers": int, "device": str,
               "pretrained": bool, "model_kwargs": dict, "channels_last": bool, "data": str, "skip_corrupt": bool,
               "options": dict}
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class Cell:
    """One `dgbench run` of a sweep: one model under one protocol, dataset, seed and precision."""
    model: str
    protocol: str
    dataset: str | None
    seed: int
    precision: str
    options: tuple[tuple[str, Any], ...] = ()  # the shared run options, sorted (hashable)

    @property
    def id(self) -> str:
        return fingerprint([self.model, self.protocol, self.dataset, self.seed, self.precision, list(self.options)])[:16]

    def __hash__(self) -> int:  # by what it measures: dict-valued options (model_kwargs) are not hashable
        return hash(self.id)

    @property
    def label(self) -> str:
        return f"{self.model} · {self.protocol} · {self.dataset or 'default data'} · seed {self.seed} · {self.precision}"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "protocol": self.protocol, "dataset": self.dataset, "seed": self.seed,
                "precision": self.precision, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(d["model"], d["protocol"], d["dataset"], int(d["seed"]), d["precision"],
                   tuple(sorted((d.get("options") or {}).items())))


@dataclass
class GridSpec:
    """What to sweep (the axes, unexpanded) and the run options every cell shares."""
    models: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    datasets: list[str | None] = field(default_factory=lambda: [None])
    seeds: list[int] = field(default_factory=lambda: [0])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "flags"

    def cells(self) -> list[Cell]:
        """Every cell, models expanded (globs, ``all``), in axis order: model-major, like a table's rows."""
        if not self.models or not self.protocols:
            raise DgbenchError(f"{self.source}: a sweep needs at least one model and one protocol "
                               "(--model/-m and --protocol/-p, or models and protocols in the grid table)")
        _check_protocols(self.protocols)
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise DgbenchError(f"{self.source}: precision {bad[0]!r} is not one of {', '.join(PRECISIONS)}")
        models = expand_models(self.models, pretrained=bool(self.options.get("pretrained", True)))
        opts = tuple(sorted((k, v) for k, v in self.options.items() if v is not None))
        cells = [Cell(m, p, d, s, prec, opts) for m in models for p in self.protocols for d in self.datasets
                 for s in self.seeds for prec in self.precisions]
        return list(dict.fromkeys(cells))  # a model named twice (a name and a glob) is one cell


def expand_models(patterns: list[str], *, pretrained: bool) -> list[str]:
    """Names as given (zoo names canonical), globs and ``all`` expanded against the zoo."""
    from ..models.external import is_external
    from ..protocols.model_select import resolve_models

    out: list[str] = []
    for pattern in patterns:
        if is_external(pattern):
            out.append(pattern)
        else:
            out += [str(m) for m in resolve_models(pattern, pretrained=pretrained)]
    return list(dict.fromkeys(out))


def _check_protocols(names: list[str]) -> None:
    from ..protocols import get

    for name in names:
        get(name)  # an unknown name raises with suggestions


def split_list(values: list[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (flags may be repeated or comma-separated)."""
    return [v.strip() for item in values or [] for v in str(item).split(",") if v.strip()]


def load_toml(path: str | os.PathLike) -> tuple[GridSpec, dict[str, Any]]:
    """The grid of a TOML file, and its ``[launcher]`` table (checked by the launchers)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DgbenchError(f"{path}: no such sweep file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DgbenchError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"grid", "run", "launcher"})
    if unknown:
        raise DgbenchError(f"{path}: unknown table {unknown[0]!r} (a sweep file has the tables grid, run and launcher)")
    grid, run = doc.get("grid", {}), doc.get("run", {})
    spec = GridSpec(source=str(path))
    for axis in GRID_AXES:
        if axis in grid:
            setattr(spec, axis, _axis(path, axis, grid[axis]))
    extra = sorted(set(grid) - set(GRID_AXES))
    if extra:
        raise DgbenchError(f"{path}: grid.{extra[0]} is not an axis (axes: {', '.join(GRID_AXES)})")
    spec.options = check_options(run, f"{path}: run table:")
    return spec, dict(doc.get("launcher", {}))


def _axis(path: Path, axis: str, value: Any) -> list[Any]:
    want = int if axis == "seeds" else str
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, want) and not isinstance(v, bool) for v in values):
        raise DgbenchError(f"{path}: grid.{axis} = {value!r}: expected a non-empty list of {want.__name__}s")
    return list(values)


def check_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """The shared run options, each known and of its type."""
    for key, value in options.items():
        if key not in RUN_OPTIONS:
            raise DgbenchError(f"{where} {key!r} is not a run option (known: {', '.join(sorted(RUN_OPTIONS))})")
        want = RUN_OPTIONS[key]
        if value is not None and (not isinstance(value, want) or (want is int and isinstance(value, bool))):
            raise DgbenchError(f"{where} {key} = {value!r}: expected {want.__name__}")
    return dict(options)

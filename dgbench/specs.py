"""Shift and protocol specs, loaded from the TOML files of ``transforms/`` and validated.

This module reads the files and checks everything that does not depend on a protocol's kind; it
sits below the protocols and the results, so both read the specs (the results: a protocol's shift
order) without importing the protocols. The checks a protocol table's kind makes (its own fields,
their types, cross-references) run in :mod:`dgbench.protocols.base`, the home of the kinds, before
any protocol is used: :func:`dgbench.protocols.specs.registry` is the checked registry.

Every ``*.toml`` file of the shipped transforms folder (plus the folders listed in
``$DGBENCH_TRANSFORMS``, separated by ``os.pathsep``) may hold three tables:

* ``[shifts.NAME]``: one shift (``kind``, ``units``, ``formula``, the kind's parameters, ``clip``);
* ``[families.NAME]``: a severity family: a shift template with ``param``, ``severities`` and
  ``name``/``formula`` templates containing ``{severity}``, expanded to one shift per severity
  (their specs carry ``family`` and ``severity``);
* ``[protocols.NAME]``: a protocol: ``kind`` (default ``appearance``), ``description``, and the
  kind's own fields (appearance: ``shifts``, ``families``, ``reference``, ``fallbacks``;
  cross-domain: ``pairs``), see :mod:`dgbench.protocols.base`;
* ``[pairs.NAME]``: a cross-domain pair of registered datasets: ``task`` (classification or
  segmentation), ``domains`` (two dataset names, the pair's first domain first), ``weights``
  (``builtin``: shipped checkpoints; ``checkpoints``: ``--checkpoint-a``/``--checkpoint-b``),
  ``split`` (the split each domain is tested on, default ``val``), optional ``aliases`` (other names ``--dataset`` accepts) and ``description``.

A malformed file raises :class:`~dgbench.errors.SpecError` naming the file and the field.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import data_dir
from .errors import SpecError, UnknownNameError
from .shifts import KIND_PARAMS, KINDS, ShiftSpec, channel_indices

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

TRANSFORMS_ENV = "DGBENCH_TRANSFORMS"

_SHIFT_FIELDS = {"kind", "units", "formula", "description", "clip"}
_FAMILY_FIELDS = _SHIFT_FIELDS | {"param", "severities", "name"}
PROTOCOL_FIELDS = {"kind", "description"}  # every kind's; the rest are the kind's own
_PAIR_FIELDS = {"task": (str,), "domains": (list,), "weights": (str,), "split": (str,), "aliases": (list,),
                "description": (str,)}
PAIR_TASKS = ("classification", "segmentation")
PAIR_WEIGHTS = ("builtin", "checkpoints")
_TOP_TABLES = ("shifts", "families", "protocols", "pairs")


@dataclass(frozen=True)
class PairSpec:
    """Two registered datasets, each the training domain of one model and the test set of both."""

    name: str
    task: str
    domains: tuple[str, str]
    weights: str = "checkpoints"
    split: str = "val"  # the split each domain is tested on
    aliases: tuple[str, ...] = ()
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class ProtocolSpec:
    """A ``[protocols.NAME]`` table: the fields every kind has, plus the kind's own ``params``."""

    name: str
    kind: str = "appearance"
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    # Appearance fields, read by many callers: kept as properties of the spec.
    @property
    def shifts(self) -> tuple[str, ...]:
        return tuple(self.params.get("shifts", ())) + tuple(f"family:{f}" for f in self.params.get("families", ()))

    @property
    def reference(self) -> str:
        return self.params.get("reference", "origin")

    @property
    def fallbacks(self) -> dict[str, str]:
        return dict(self.params.get("fallbacks", {}))


@dataclass
class SpecRegistry:
    shifts: dict[str, ShiftSpec] = field(default_factory=dict)
    families: dict[str, list[str]] = field(default_factory=dict)
    protocols: dict[str, ProtocolSpec] = field(default_factory=dict)
    pairs: dict[str, PairSpec] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    # Set by dgbench.protocols.base once every protocol's kind has checked its table.
    kinds_checked: bool = field(default=False, compare=False, repr=False)

    def pair_names(self) -> dict[str, str]:
        """Every name ``--dataset`` accepts for a pair (its own and its aliases) -> the pair."""
        out: dict[str, str] = {}
        for p in self.pairs.values():
            for n in (p.name, *p.aliases):
                out.setdefault(n, p.name)
        return out


def spec_error(path: Path | str, where: str, msg: str) -> SpecError:
    return SpecError(f"{path}: {where}: {msg}")


def check_type(path: Path | str, where: str, value: Any, types: tuple[type, ...], what: str) -> None:
    # bool is an int in Python; a parameter that wants a number must not accept true/false.
    if isinstance(value, bool) and bool not in types:
        raise spec_error(path, where, f"{what} must be {'/'.join(t.__name__ for t in types)}, got a boolean")
    if not isinstance(value, types):
        raise spec_error(path, where, f"{what} must be {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}")


def _validate_shift(path: Path, where: str, table: dict[str, Any], *, skip_param: str | None = None) -> tuple[str, dict[str, Any]]:
    """Check a shift (or family) table; return (kind, params)."""
    if "kind" not in table:
        raise spec_error(path, where, "missing field 'kind'")
    kind = table["kind"]
    if kind not in KINDS:
        raise spec_error(path, f"{where}.kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    for req in ("units", "formula"):
        if req not in table:
            raise spec_error(path, where, f"missing field {req!r} (every shift states its units and formula)")
        check_type(path, f"{where}.{req}", table[req], (str,), req)
    if "clip" in table:
        check_type(path, f"{where}.clip", table["clip"], (bool,), "clip")
        if table["clip"] and kind not in ("add", "scale_std"):
            raise spec_error(path, f"{where}.clip", f"clip applies to the affine kinds only, not {kind!r}")
    wanted = KIND_PARAMS[kind]
    params: dict[str, Any] = {}
    for key, value in table.items():
        if key in _FAMILY_FIELDS:
            continue
        if key not in wanted:
            raise spec_error(path, f"{where}.{key}", f"unknown field for kind {kind!r} (parameters: {', '.join(wanted) or 'none'})")
        check_type(path, f"{where}.{key}", value, wanted[key], key)
        params[key] = value
    for key in wanted:
        if key not in params and key != skip_param:
            raise spec_error(path, where, f"missing parameter {key!r} for kind {kind!r}")
    if "channels" in params:
        try:
            channel_indices(params["channels"])
        except ValueError as exc:
            raise spec_error(path, f"{where}.channels", str(exc)) from None
    return kind, params


def _load_file(path: Path, reg: SpecRegistry) -> None:
    try:
        with open(path, "rb") as f:
            doc = _toml.load(f)
    except _toml.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    for top in doc:
        if top not in _TOP_TABLES:
            raise spec_error(path, top, f"unknown table (expected {', '.join(_TOP_TABLES)})")
    for name, table in doc.get("shifts", {}).items():
        where = f"shifts.{name}"
        if not isinstance(table, dict):
            raise spec_error(path, where, "must be a table")
        kind, params = _validate_shift(path, where, table)
        _add_shift(reg, path, where, ShiftSpec(
            name=name, kind=kind, params=params, clip=bool(table.get("clip", False)),
            units=table["units"], formula=table["formula"], description=table.get("description", ""),
            source=str(path),
        ))
    for fam, table in doc.get("families", {}).items():
        where = f"families.{fam}"
        if not isinstance(table, dict):
            raise spec_error(path, where, "must be a table")
        for req in ("param", "severities", "name"):
            if req not in table:
                raise spec_error(path, where, f"missing field {req!r}")
        kind, params = _validate_shift(path, where, table, skip_param=table["param"])
        param = table["param"]
        if param not in KIND_PARAMS[kind]:
            raise spec_error(path, f"{where}.param", f"{param!r} is not a parameter of kind {kind!r}")
        sev = table["severities"]
        if not isinstance(sev, list) or not sev:
            raise spec_error(path, f"{where}.severities", "must be a non-empty list of numbers")
        if "{severity" not in table["name"]:
            raise spec_error(path, f"{where}.name", "must contain '{severity}'")
        members = []
        for i, s in enumerate(sev):
            check_type(path, f"{where}.severities[{i}]", s, (int, float), "severity")
            label = f"{s:g}"
            name = table["name"].replace("{severity}", label)
            members.append(name)
            _add_shift(reg, path, where, ShiftSpec(
                name=name, kind=kind, params={**params, param: s}, clip=bool(table.get("clip", False)),
                units=table["units"], formula=table["formula"].replace("{severity}", label),
                description=table.get("description", ""), family=fam, severity=float(s), source=str(path),
            ))
        reg.families[fam] = members
    for name, table in doc.get("protocols", {}).items():
        _add_protocol(path, reg, name, table)
    for name, table in doc.get("pairs", {}).items():
        _add_pair(path, reg, name, table)


def _add_protocol(path: Path, reg: SpecRegistry, name: str, table: Any) -> None:
    """A protocol table as read; its kind checks it later (:func:`dgbench.protocols.base.check_kinds`)."""
    where = f"protocols.{name}"
    if not isinstance(table, dict):
        raise spec_error(path, where, "must be a table")
    if name in reg.protocols:
        raise spec_error(path, where, f"protocol defined twice (also in {reg.protocols[name].source})")
    params = {k: v for k, v in table.items() if k not in PROTOCOL_FIELDS}
    reg.protocols[name] = ProtocolSpec(name=name, kind=table.get("kind", "appearance"),
                                       description=table.get("description", ""), params=params, source=str(path))


def _add_pair(path: Path, reg: SpecRegistry, name: str, table: Any) -> None:
    where = f"pairs.{name}"
    if not isinstance(table, dict):
        raise spec_error(path, where, "must be a table")
    for key, value in table.items():
        if key not in _PAIR_FIELDS:
            raise spec_error(path, f"{where}.{key}", f"unknown field (known: {', '.join(_PAIR_FIELDS)})")
        check_type(path, f"{where}.{key}", value, _PAIR_FIELDS[key], key)
    for key in ("task", "domains"):
        if key not in table:
            raise spec_error(path, where, f"missing field {key!r}")
    if table["task"] not in PAIR_TASKS:
        raise spec_error(path, f"{where}.task", f"must be one of {', '.join(PAIR_TASKS)}, got {table['task']!r}")
    domains = table["domains"]
    if len(domains) != 2 or not all(isinstance(d, str) for d in domains) or domains[0] == domains[1]:
        raise spec_error(path, f"{where}.domains", f"must name two different datasets, got {domains!r}")
    weights = table.get("weights", "checkpoints")
    if weights not in PAIR_WEIGHTS:
        raise spec_error(path, f"{where}.weights", f"must be one of {', '.join(PAIR_WEIGHTS)}, got {weights!r}")
    if name in reg.pairs:
        raise spec_error(path, where, f"pair defined twice (also in {reg.pairs[name].source})")
    reg.pairs[name] = PairSpec(name=name, task=table["task"], domains=(domains[0], domains[1]), weights=weights,
                               split=table.get("split", "val"), aliases=tuple(table.get("aliases", ())), description=table.get("description", ""),
                               source=str(path))


def _add_shift(reg: SpecRegistry, path: Path, where: str, spec: ShiftSpec) -> None:
    if spec.name in reg.shifts:
        raise spec_error(path, where, f"shift {spec.name!r} defined twice (also in {reg.shifts[spec.name].source})")
    reg.shifts[spec.name] = spec


def spec_dirs() -> list[Path]:
    dirs = [data_dir("transforms")]
    extra = os.environ.get(TRANSFORMS_ENV, "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return dirs


def load_specs(dirs: list[Path] | None = None) -> SpecRegistry:
    """Load and validate every spec file (all but the kinds' checks of the protocol tables)."""
    reg = SpecRegistry()
    for d in dirs if dirs is not None else spec_dirs():
        if not d.is_dir():
            raise SpecError(f"{d}: transforms folder not found")
        for path in sorted(d.glob("*.toml")):
            reg.files.append(path)
            _load_file(path, reg)
    taken: dict[str, str] = {}
    for pair in reg.pairs.values():
        for n in (pair.name, *pair.aliases):
            if n in taken and taken[n] != pair.name:
                raise SpecError(f"{pair.source}: pairs.{pair.name}: name {n!r} also names pair {taken[n]!r}")
            taken[n] = pair.name
    return reg


@functools.lru_cache(maxsize=4)
def _cached_registry(key: tuple[tuple[str, int], ...]) -> SpecRegistry:
    return load_specs()


def _files_key() -> tuple[tuple[str, int], ...]:
    """The spec files and their modification times: an edited or added file reloads the specs."""
    out = []
    for d in spec_dirs():
        out.append((str(d), d.stat().st_mtime_ns if d.is_dir() else -1))
        out += [(str(p), p.stat().st_mtime_ns) for p in (sorted(d.glob("*.toml")) if d.is_dir() else [])]
    return tuple(out)


def registry() -> SpecRegistry:
    return _cached_registry(_files_key())


def get_shift(name: str, reg: SpecRegistry | None = None) -> ShiftSpec:
    reg = reg or registry()
    if name not in reg.shifts:
        raise UnknownNameError("shift", name, reg.shifts)
    return reg.shifts[name]


def list_shifts() -> list[str]:
    return sorted(registry().shifts)


def list_protocols() -> list[str]:
    return sorted(registry().protocols)


def get_protocol(name: str, reg: SpecRegistry | None = None) -> ProtocolSpec:
    reg = reg or registry()
    if name not in reg.protocols:
        raise UnknownNameError("protocol", name, reg.protocols)
    return reg.protocols[name]


def protocol_shifts(name: str, subset: list[str] | None = None, reg: SpecRegistry | None = None) -> list[ShiftSpec]:
    """The shifts of protocol ``name`` in order (families expanded), optionally only ``subset``.

    ``subset`` may name shifts outside the protocol (any known shift): ``--shifts`` picks what to
    run. The reference shift is always included first, since every drop is measured from it.
    """
    reg = reg or registry()
    proto = get_protocol(name, reg)
    names: list[str] = []
    for s in proto.shifts:
        names += reg.families[s[7:]] if s.startswith("family:") else [s]
    if subset:
        wanted: list[str] = []
        for s in subset:
            if s in reg.families:
                wanted += reg.families[s]
            else:
                get_shift(s, reg)  # raises with suggestions when unknown
                wanted.append(s)
        names = wanted
    ordered = [proto.reference] + [n for n in dict.fromkeys(names) if n != proto.reference]
    return [reg.shifts[n] for n in ordered]

"""Shift and protocol specs, loaded from the TOML files of ``transforms/`` and validated.

Every ``*.toml`` file of the shipped transforms folder (plus the folders listed in
``$DGBENCH_TRANSFORMS``, separated by ``os.pathsep``) may hold three tables:

* ``[shifts.NAME]``: one shift (``kind``, ``units``, ``formula``, the kind's parameters, ``clip``);
* ``[families.NAME]``: a severity family: a shift template with ``param``, ``severities`` and
  ``name``/``formula`` templates containing ``{severity}``, expanded to one shift per severity
  (their specs carry ``family`` and ``severity``);
* ``[protocols.NAME]``: ``shifts`` (names), optional ``families`` (all members), ``reference``,
  ``description`` and ``fallbacks`` (shift -> replacement on datasets with ``offline_styles_only``).

A malformed file raises :class:`~dgbench.errors.SpecError` naming the file and the field.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import data_dir
from ..errors import SpecError, UnknownNameError
from ..shifts import KIND_PARAMS, KINDS, ShiftSpec, channel_indices

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

TRANSFORMS_ENV = "DGBENCH_TRANSFORMS"

_SHIFT_FIELDS = {"kind", "units", "formula", "description", "clip"}
_FAMILY_FIELDS = _SHIFT_FIELDS | {"param", "severities", "name"}
_PROTOCOL_FIELDS = {"description", "shifts", "families", "reference", "fallbacks"}


@dataclass(frozen=True)
class ProtocolSpec:
    """A named list of shifts measured together, with the reference the drops are taken from."""

    name: str
    shifts: tuple[str, ...]
    reference: str = "origin"
    description: str = ""
    fallbacks: dict[str, str] = field(default_factory=dict)
    source: str = ""


@dataclass
class SpecRegistry:
    shifts: dict[str, ShiftSpec] = field(default_factory=dict)
    families: dict[str, list[str]] = field(default_factory=dict)
    protocols: dict[str, ProtocolSpec] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _err(path: Path, where: str, msg: str) -> SpecError:
    return SpecError(f"{path}: {where}: {msg}")


def _check_type(path: Path, where: str, value: Any, types: tuple[type, ...], what: str) -> None:
    # bool is an int in Python; a parameter that wants a number must not accept true/false.
    if isinstance(value, bool) and bool not in types:
        raise _err(path, where, f"{what} must be {'/'.join(t.__name__ for t in types)}, got a boolean")
    if not isinstance(value, types):
        raise _err(path, where, f"{what} must be {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}")


def _validate_shift(path: Path, where: str, table: dict[str, Any], *, skip_param: str | None = None) -> tuple[str, dict[str, Any]]:
    """Check a shift (or family) table; return (kind, params)."""
    if "kind" not in table:
        raise _err(path, where, "missing field 'kind'")
    kind = table["kind"]
    if kind not in KINDS:
        raise _err(path, f"{where}.kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    for req in ("units", "formula"):
        if req not in table:
            raise _err(path, where, f"missing field {req!r} (every shift states its units and formula)")
        _check_type(path, f"{where}.{req}", table[req], (str,), req)
    if "clip" in table:
        _check_type(path, f"{where}.clip", table["clip"], (bool,), "clip")
        if table["clip"] and kind not in ("add", "scale_std"):
            raise _err(path, f"{where}.clip", f"clip applies to the affine kinds only, not {kind!r}")
    wanted = KIND_PARAMS[kind]
    params: dict[str, Any] = {}
    for key, value in table.items():
        if key in _FAMILY_FIELDS:
            continue
        if key not in wanted:
            raise _err(path, f"{where}.{key}", f"unknown field for kind {kind!r} (parameters: {', '.join(wanted) or 'none'})")
        _check_type(path, f"{where}.{key}", value, wanted[key], key)
        params[key] = value
    for key in wanted:
        if key not in params and key != skip_param:
            raise _err(path, where, f"missing parameter {key!r} for kind {kind!r}")
    if "channels" in params:
        try:
            channel_indices(params["channels"])
        except ValueError as exc:
            raise _err(path, f"{where}.channels", str(exc)) from None
    return kind, params


def _load_file(path: Path, reg: SpecRegistry) -> None:
    try:
        with open(path, "rb") as f:
            doc = _toml.load(f)
    except _toml.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    for top in doc:
        if top not in ("shifts", "families", "protocols"):
            raise _err(path, top, "unknown table (expected shifts, families or protocols)")
    for name, table in doc.get("shifts", {}).items():
        where = f"shifts.{name}"
        if not isinstance(table, dict):
            raise _err(path, where, "must be a table")
        kind, params = _validate_shift(path, where, table)
        _add_shift(reg, path, where, ShiftSpec(
            name=name, kind=kind, params=params, clip=bool(table.get("clip", False)),
            units=table["units"], formula=table["formula"], description=table.get("description", ""),
            source=str(path),
        ))
    for fam, table in doc.get("families", {}).items():
        where = f"families.{fam}"
        if not isinstance(table, dict):
            raise _err(path, where, "must be a table")
        for req in ("param", "severities", "name"):
            if req not in table:
                raise _err(path, where, f"missing field {req!r}")
        kind, params = _validate_shift(path, where, table, skip_param=table["param"])
        param = table["param"]
        if param not in KIND_PARAMS[kind]:
            raise _err(path, f"{where}.param", f"{param!r} is not a parameter of kind {kind!r}")
        sev = table["severities"]
        if not isinstance(sev, list) or not sev:
            raise _err(path, f"{where}.severities", "must be a non-empty list of numbers")
        if "{severity" not in table["name"]:
            raise _err(path, f"{where}.name", "must contain '{severity}'")
        members = []
        for i, s in enumerate(sev):
            _check_type(path, f"{where}.severities[{i}]", s, (int, float), "severity")
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
        where = f"protocols.{name}"
        if not isinstance(table, dict):
            raise _err(path, where, "must be a table")
        for key in table:
            if key not in _PROTOCOL_FIELDS:
                raise _err(path, f"{where}.{key}", f"unknown field (known: {', '.join(sorted(_PROTOCOL_FIELDS))})")
        shifts = table.get("shifts", [])
        if not isinstance(shifts, list) or not all(isinstance(s, str) for s in shifts):
            raise _err(path, f"{where}.shifts", "must be a list of shift names")
        fams = table.get("families", [])
        if not isinstance(fams, list) or not all(isinstance(s, str) for s in fams):
            raise _err(path, f"{where}.families", "must be a list of family names")
        fallbacks = table.get("fallbacks", {})
        if not isinstance(fallbacks, dict):
            raise _err(path, f"{where}.fallbacks", "must be a table of shift = replacement")
        if name in reg.protocols:
            raise _err(path, where, f"protocol defined twice (also in {reg.protocols[name].source})")
        reg.protocols[name] = ProtocolSpec(
            name=name, shifts=tuple(shifts) + tuple(f"family:{f}" for f in fams),
            reference=table.get("reference", "origin"), description=table.get("description", ""),
            fallbacks=dict(fallbacks), source=str(path),
        )


def _add_shift(reg: SpecRegistry, path: Path, where: str, spec: ShiftSpec) -> None:
    if spec.name in reg.shifts:
        raise _err(path, where, f"shift {spec.name!r} defined twice (also in {reg.shifts[spec.name].source})")
    reg.shifts[spec.name] = spec


def spec_dirs() -> list[Path]:
    dirs = [data_dir("transforms")]
    extra = os.environ.get(TRANSFORMS_ENV, "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return dirs


def load_specs(dirs: list[Path] | None = None) -> SpecRegistry:
    """Load and validate every spec file; protocol references are checked after all files load."""
    reg = SpecRegistry()
    for d in dirs if dirs is not None else spec_dirs():
        if not d.is_dir():
            raise SpecError(f"{d}: transforms folder not found")
        for path in sorted(d.glob("*.toml")):
            reg.files.append(path)
            _load_file(path, reg)
    for proto in reg.protocols.values():
        where = f"protocols.{proto.name}"
        for s in proto.shifts:
            if s.startswith("family:"):
                if s[7:] not in reg.families:
                    raise SpecError(f"{proto.source}: {where}.families: unknown family {s[7:]!r}")
            elif s not in reg.shifts:
                raise SpecError(f"{proto.source}: {where}.shifts: unknown shift {s!r}")
        if proto.reference not in reg.shifts:
            raise SpecError(f"{proto.source}: {where}.reference: unknown shift {proto.reference!r}")
        for a, b in proto.fallbacks.items():
            if b not in reg.shifts:
                raise SpecError(f"{proto.source}: {where}.fallbacks.{a}: unknown shift {b!r}")
    return reg


@functools.lru_cache(maxsize=1)
def _default_registry(key: str) -> SpecRegistry:  # key: the env var, so changing it reloads
    return load_specs()


def registry() -> SpecRegistry:
    return _default_registry(os.environ.get(TRANSFORMS_ENV, ""))


def get_shift(name: str) -> ShiftSpec:
    reg = registry()
    if name not in reg.shifts:
        raise UnknownNameError("shift", name, reg.shifts)
    return reg.shifts[name]


def list_shifts() -> list[str]:
    return sorted(registry().shifts)


def list_protocols() -> list[str]:
    return sorted(registry().protocols)


def get_protocol(name: str) -> ProtocolSpec:
    reg = registry()
    if name not in reg.protocols:
        raise UnknownNameError("protocol", name, reg.protocols)
    return reg.protocols[name]


def protocol_shifts(name: str, subset: list[str] | None = None) -> list[ShiftSpec]:
    """The shifts of protocol ``name`` in order (families expanded), optionally only ``subset``.

    ``subset`` may name shifts outside the protocol (any known shift): ``--shifts`` picks what to
    run. The reference shift is always included first, since every drop is measured from it.
    """
    reg = registry()
    proto = get_protocol(name)
    names: list[str] = []
    for s in proto.shifts:
        names += reg.families[s[7:]] if s.startswith("family:") else [s]
    if subset:
        wanted: list[str] = []
        for s in subset:
            if s in reg.families:
                wanted += reg.families[s]
            else:
                get_shift(s)  # raises with suggestions when unknown
                wanted.append(s)
        names = wanted
    ordered = [proto.reference] + [n for n in dict.fromkeys(names) if n != proto.reference]
    return [reg.shifts[n] for n in ordered]

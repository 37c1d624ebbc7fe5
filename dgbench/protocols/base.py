"""The protocol contract: one request in, records out, for every kind of protocol.

A protocol is a ``[protocols.NAME]`` table of a TOML file in ``transforms/`` (or a folder on
``$DGBENCH_TRANSFORMS``) whose ``kind`` names a :class:`Protocol` subclass. The kind class says
which extra TOML fields it takes (``fields``), which datasets it runs on, and how it runs:

    class Divergence(Protocol):
        kind = "divergence"
        fields = {"pairs": list}                 # validated when the TOML loads
        def run(self, request, runtime) -> RunSummary: ...

Kinds are found by name, as data: :data:`KINDS` maps the built-in kinds to ``module:Class``;
installed packages add kinds through the ``dgbench.protocols`` entry-point group. The module is
imported only when a protocol of that kind is used.

:func:`run` is the one way to run a protocol: it starts the :class:`~dgbench.runtime.Runtime`
(device, process group), hands it to the kind, and closes it, whatever happens.
"""
from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DgbenchError, UnknownNameError
from ..runtime import Runtime
from ..specs import PROTOCOL_FIELDS, ProtocolSpec, SpecRegistry, check_type, load_specs, spec_error
from ..specs import registry as _read_specs

Note = Callable[[str], None]

# Built-in kinds: name -> "module:Class" (imported on first use).
KINDS: dict[str, str] = {
    "appearance": "dgbench.protocols.appearance:AppearanceProtocol",
    "cross-domain": "dgbench.protocols.cross_domain:CrossDomainProtocol",
    "divergence": "dgbench.protocols.divergence:DivergenceProtocol",
    "finetune": "dgbench.protocols.finetune:FinetuneProtocol",
    "natural-shifts": "dgbench.protocols.natural:NaturalShiftsProtocol",
    "shape-bias": "dgbench.protocols.shape_bias:ShapeBiasProtocol",
    "leave-one-out": "dgbench.protocols.leave_one_out:LeaveOneOutProtocol",
}
ENTRY_POINT_GROUP = "dgbench.protocols"


@dataclass
class RunRequest:
    """What the user asked for, as the CLI and the Python API both build it.

    ``options`` holds what only some kinds read (cross-domain: ``checkpoint_a``/``checkpoint_b``,
    data roots, segmentation inference settings); a kind rejects options it does not use.
    """

    model: Any = "ibn_a"  # name, alias, glob, 'all', list, 'pkg.mod:fn', 'timm/NAME' or an nn.Module
    dataset: str | None = None
    data: str | os.PathLike | None = None
    shifts: Sequence[str] | None = None
    limit: int | None = None
    subset: int | None = None
    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    precision: str = "fp32"
    channels_last: bool = True
    results: str | os.PathLike | None = None
    store: bool = True
    force: bool = False
    skip_corrupt: bool = False
    pretrained: bool = True
    checkpoint: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    progress: bool = True
    cache_root: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    note: Note | None = None

    def say(self, msg: str) -> None:
        if self.note is not None:
            self.note(msg)


@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    computed: int = 0  # results computed in this run
    reused: int = 0  # results already stored and skipped
    duration_s: float = 0.0
    images: int = 0  # images decoded in this run (summed over model passes)
    dataset: str = ""
    kind: str = ""
    is_main: bool = True  # rank 0 (or the only process): the one that reports


@dataclass(frozen=True)
class ProtocolInfo:
    """One row of ``dgbench protocols``."""

    name: str
    kind: str
    datasets: tuple[str, ...]
    conditions: tuple[str, ...]  # shifts, or domain pairs, or whatever the kind varies
    description: str
    source: str


class Protocol(ABC):
    """One registered protocol: a spec from TOML and the behaviour of its kind."""

    kind: ClassVar[str]
    fields: ClassVar[dict[str, type | tuple[type, ...]]] = {}  # the kind's own TOML fields
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: ProtocolSpec):
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def validate(cls, spec: ProtocolSpec, registry: Any) -> None:
        """Cross-checks against the other specs (names of shifts, pairs...); raise SpecError."""

    def info(self) -> ProtocolInfo:
        return ProtocolInfo(self.name, self.kind, tuple(self.datasets()), tuple(self.conditions()),
                            self.spec.description, self.spec.source)

    def datasets(self) -> Sequence[str]:
        return ()

    def conditions(self) -> Sequence[str]:
        return ()

    @abstractmethod
    def run(self, request: RunRequest, runtime: Runtime) -> RunSummary:
        """Measure what ``request`` asks, store the new records (rank 0), return every record."""

    def rerun_request(self, dataset: str, rows: Any) -> RunRequest:
        """The request that re-measures a published leaderboard's rows (``dgbench check --rerun``)."""
        raise DgbenchError(f"protocol {self.name!r} (kind {self.kind}) cannot re-run a leaderboard; "
                           "compare against stored results instead (without --rerun)")


def reject_options(request: RunRequest, protocol: str, allowed: Sequence[str] = (), pair: str | None = None) -> None:
    """A kind that does not use an option says so, naming the flags (and the pair, for the kinds
    whose options depend on it), instead of ignoring them."""
    extra = [k for k, v in request.options.items() if k not in allowed and v not in (None, False)]
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        on = f" on the {pair} pair" if pair else ""
        raise DgbenchError(f"{flags}: not used by the {protocol} protocol{on}")


# ----------------------------------------------------------------------------- kinds
_kind_cache: dict[str, type[Protocol]] = {}


def _entry_point_kinds() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> list[str]:
    return sorted({*KINDS, *_entry_point_kinds()})


def kind_class(kind: str) -> type[Protocol]:
    """The class of protocol kind ``kind`` (built-in, or from an installed package)."""
    if kind in _kind_cache:
        return _kind_cache[kind]
    if kind in KINDS:
        import importlib

        mod, _, attr = KINDS[kind].partition(":")
        cls = getattr(importlib.import_module(mod), attr)
    else:
        eps = _entry_point_kinds()
        if kind not in eps:
            raise UnknownNameError("protocol kind", kind, known_kinds())
        from ..plugins import load_entry_point

        cls = load_entry_point(eps[kind], ENTRY_POINT_GROUP)
    if not (isinstance(cls, type) and issubclass(cls, Protocol)) or cls.kind != kind:
        raise DgbenchError(f"protocol kind {kind!r}: {cls!r} is not a Protocol subclass with kind = {kind!r}")
    _kind_cache[kind] = cls
    return cls


# ----------------------------------------------------------------------------- specs, checked by their kinds
def check_protocol_table(spec: ProtocolSpec) -> None:
    """What a protocol table's kind says of it: the kind exists, its own fields and their types."""
    path, where, kind = spec.source, f"protocols.{spec.name}", spec.kind
    if not isinstance(kind, str) or kind not in known_kinds():
        raise spec_error(path, f"{where}.kind", f"unknown protocol kind {kind!r} (known: {', '.join(known_kinds())})")
    cls = kind_class(kind)
    for key, value in spec.params.items():
        if key not in cls.fields:
            known = ", ".join(sorted(PROTOCOL_FIELDS | set(cls.fields)))
            raise spec_error(path, f"{where}.{key}", f"unknown field for kind {kind!r} (known: {known})")
        types = cls.fields[key] if isinstance(cls.fields[key], tuple) else (cls.fields[key],)
        check_type(path, f"{where}.{key}", value, types, key)  # type: ignore[arg-type]
    for key in cls.required:
        if key not in spec.params:
            raise spec_error(path, where, f"missing field {key!r} (kind {kind!r})")


def check_kinds(reg: SpecRegistry) -> SpecRegistry:
    """Every protocol table checked by its kind, then each kind's cross-checks (names of shifts,
    pairs...) against the whole registry, once all files are read."""
    if not reg.kinds_checked:
        for spec in reg.protocols.values():
            check_protocol_table(spec)
        for spec in reg.protocols.values():
            kind_class(spec.kind).validate(spec, reg)
        reg.kinds_checked = True
    return reg


def registry() -> SpecRegistry:
    """The spec files as read (and cached) by :mod:`dgbench.specs`, checked by the kinds."""
    return check_kinds(_read_specs())


def load_checked_specs(dirs: list[Path] | None = None) -> SpecRegistry:
    """:func:`dgbench.specs.load_specs` of ``dirs``, checked by the kinds."""
    return check_kinds(load_specs(dirs))


# ----------------------------------------------------------------------------- running
def get(name: str) -> Protocol:
    """The registered protocol ``name`` (unknown names get suggestions)."""
    reg = registry()
    if name not in reg.protocols:
        raise UnknownNameError("protocol", name, reg.protocols)
    spec = reg.protocols[name]
    return kind_class(spec.kind)(spec)


def list_infos() -> list[ProtocolInfo]:
    return [get(n).info() for n in sorted(registry().protocols)]


def run(protocol: str | Protocol, request: RunRequest | None = None, runtime: Runtime | None = None) -> RunSummary:
    """Run a protocol: the one entry point of the CLI, the Python API and ``dgbench check --rerun``.

    Starts (and afterwards closes) the runtime, in the request's precision, unless one is passed in
    (then it must run the request's precision: records name the precision that ran).
    """
    proto = get(protocol) if isinstance(protocol, str) else protocol
    req = request or RunRequest()
    if runtime is not None and runtime.precision != req.precision:
        raise DgbenchError(f"--precision {req.precision}: the runtime passed in runs {runtime.precision}; "
                           "start it with Runtime.start(device, precision) of the request")
    with (contextlib.nullcontext(runtime) if runtime is not None else Runtime.start(req.device, req.precision)) as rt:
        summary = proto.run(req, rt)
        summary.is_main = rt.is_main
    summary.kind = summary.kind or proto.kind
    return summary

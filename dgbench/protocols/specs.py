"""Shift and protocol specs as the protocols read them: :mod:`dgbench.specs`'s files, checked by
the protocol kinds (:func:`dgbench.protocols.base.check_kinds`).

The parser moved to :mod:`dgbench.specs` (below the protocols and the results, which read a
protocol's shift order from it); this module keeps the names protocols and users import, and
makes every lookup read the registry the kinds have checked.
"""
from __future__ import annotations

from ..shifts import ShiftSpec
from ..specs import (  # noqa: F401  (re-exported: the names this module always had)
    PAIR_TASKS,
    PAIR_WEIGHTS,
    TRANSFORMS_ENV,
    PairSpec,
    ProtocolSpec,
    SpecRegistry,
    spec_dirs,
)
from .. import specs as _specs
from .base import load_checked_specs as load_specs
from .base import registry

__all__ = [
    "PAIR_TASKS", "PAIR_WEIGHTS", "TRANSFORMS_ENV", "PairSpec", "ProtocolSpec", "SpecRegistry", "get_protocol",
    "get_shift", "list_protocols", "list_shifts", "load_specs", "protocol_shifts", "registry", "spec_dirs",
]


def get_shift(name: str) -> ShiftSpec:
    return _specs.get_shift(name, registry())


def list_shifts() -> list[str]:
    return sorted(registry().shifts)


def list_protocols() -> list[str]:
    return sorted(registry().protocols)


def get_protocol(name: str) -> ProtocolSpec:
    return _specs.get_protocol(name, registry())


def protocol_shifts(name: str, subset: list[str] | None = None) -> list[ShiftSpec]:
    """The shifts of protocol ``name`` in order (see :func:`dgbench.specs.protocol_shifts`)."""
    return _specs.protocol_shifts(name, subset, registry())

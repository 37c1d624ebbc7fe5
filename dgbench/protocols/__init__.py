"""Protocols: specs loaded from TOML (:mod:`.specs`), one contract for every kind (:mod:`.base`).

Kinds: ``appearance`` (:mod:`.appearance`: shifts of one dataset) and ``cross-domain``
(:mod:`.cross_domain`: a model trained on each domain of a pair, tested on both), plus kinds from
installed packages (entry-point group ``dgbench.protocols``).
"""
from __future__ import annotations

from .base import ProtocolSpec, RunRequest, RunSummary, get, list_infos, run
from .specs import (
    TRANSFORMS_ENV,
    PairSpec,
    SpecRegistry,
    get_protocol,
    get_shift,
    list_protocols,
    list_shifts,
    load_specs,
    protocol_shifts,
    registry,
    spec_dirs,
)

__all__ = [
    "TRANSFORMS_ENV", "PairSpec", "ProtocolSpec", "RunRequest", "RunSummary", "SpecRegistry", "get",
    "get_protocol", "get_shift", "list_infos", "list_protocols", "list_shifts", "load_specs",
    "protocol_shifts", "registry", "run", "spec_dirs",
]

"""What the protocol specs say about a published condition: the order a protocol runs its shifts
in (the paper's column order), and a corruption shift's family.

A leaderboard CSV is sorted by its key, so it no longer knows the order its protocol ran the
shifts in; pages and plots read it back from the protocol's spec (``transforms/*.toml``). The
specs are data files that :mod:`dgbench.specs` parses; they are read lazily and any
failure to read them (an unknown protocol, a broken user spec) falls back to natural order.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import DgbenchError


def natural(s: str) -> list[Any]:
    """Sort key that reads numbers as numbers (``rgb+20`` before ``rgb+100``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def protocol_shifts(protocol: str) -> list[str]:
    """The shifts of ``protocol`` in the order it runs them, each followed by its offline fallback
    (the built-in digits record ``cv-stylize`` where the protocol says ``monet``); [] if unknown."""
    try:
        from ..specs import get_protocol, protocol_shifts as spec_shifts

        fallbacks = get_protocol(protocol).fallbacks
        names = [s.name for s in spec_shifts(protocol)]
    except (DgbenchError, KeyError):  # an unknown protocol, or a user spec naming an unknown family
        return []
    out: list[str] = []
    for name in names:
        out += [name] + ([fallbacks[name]] if name in fallbacks else [])
    return list(dict.fromkeys(out))


def condition_key(protocol: str) -> Callable[[str], tuple]:
    """Sort key of a protocol's shift names: the protocol's order, unknown names after, naturally."""
    rank = {name: i for i, name in enumerate(protocol_shifts(protocol))}
    return lambda name: (rank.get(name, len(rank)), natural(name))


def ordered_conditions(protocol: str, names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=condition_key(protocol))


def corruption_of(shift: str) -> tuple[str, int, str] | None:
    """``(corruption, severity, family)`` of a corruption shift (``fog-3`` -> fog, 3, weather)."""
    try:
        from ..specs import get_shift

        spec = get_shift(shift)
    except DgbenchError:
        return None
    if spec.kind != "corruption":
        return None
    p = spec.params
    return str(p["corruption"]), int(p["severity"]), str(p["group"])

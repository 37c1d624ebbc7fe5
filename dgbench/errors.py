"""Errors dgbench raises on bad input.

Every error is a :class:`DgbenchError`, so the CLI prints its message (no traceback) and exits 2.
Messages say what was wrong, where dgbench looked, and what to do about it.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class DgbenchError(Exception):
    """Base class: a user-facing error whose message is the whole story."""


class UnknownNameError(DgbenchError, KeyError):
    """An unknown model, protocol, shift or dataset name; the message suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        self.known = sorted(set(known))
        self.suggestions = suggest(name, self.known)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            msg += f" ({len(self.known)} known: `dgbench` lists them)"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class RefusedNameError(UnknownNameError):
    """A name dgbench deliberately does not build (e.g. IBN-a x2 on a BasicBlock network); the
    message names it and says why. An :class:`UnknownNameError`, so lookups handle it the same."""

    def __init__(self, kind: str, name: str, reason: str):
        self.kind, self.name, self.reason = kind, name, reason
        self.known, self.suggestions = [], []
        Exception.__init__(self, f"{kind} {name!r} is not built: {reason}")


class DatasetNotFoundError(DgbenchError):
    """A dataset root is missing or not in the expected layout."""


class CorruptImageError(DgbenchError):
    """An image (or label map) could not be decoded; the message names the file."""


class CheckpointError(DgbenchError):
    """A checkpoint is missing, has a wrong hash, or has keys that do not fit the model."""


class ModelKwargsError(DgbenchError, TypeError):
    """A model constructor refused ``--model-kwargs`` (a TypeError too, as Python callers expect)."""


class SpecError(DgbenchError):
    """A shift, protocol or leaderboard data file is malformed; the message names file and field."""


def suggest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Closest matches to ``name`` among ``known`` (substring hits first, then fuzzy ones)."""
    known = list(known)
    low = name.lower()
    hits = [k for k in known if low and low in k.lower()]
    fuzzy = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    out: list[str] = []
    for k in sorted(hits, key=len) + fuzzy:
        if k not in out:
            out.append(k)
    return out[:n]

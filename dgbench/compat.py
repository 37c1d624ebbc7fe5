"""Old import paths that keep working after a module moved (one release), without importing early.

A moved module leaves a thin module behind whose ``__getattr__`` is :func:`forward`: a name is
looked up in the new modules only when someone asks for it, so importing the old package (the
model zoo, say) does not import what moved out of it (the built-in data).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any


def forward(old: str, new: Iterable[str], names: Iterable[str] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that finds a name in the first of the ``new`` modules
    defining it (only ``names``, when given)."""
    targets, allowed = tuple(new), None if names is None else frozenset(names)

    def __getattr__(name: str) -> Any:
        if allowed is None or name in allowed:
            for target in targets:
                module = importlib.import_module(target)
                if hasattr(module, name):
                    return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__

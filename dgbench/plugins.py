"""Extensions from installed packages, found through entry points.

A package adds to dgbench by declaring entry points in its ``pyproject.toml``:

    [project.entry-points."dgbench.models"]
    my_net = "my_pkg.nets"            # a module whose import registers models (@register_model)
    [project.entry-points."dgbench.datasets"]
    my_data = "my_pkg.data"           # a module whose import registers datasets (@register_dataset)
    [project.entry-points."dgbench.protocols"]
    my-kind = "my_pkg.kinds:MyKind"   # a Protocol subclass; its name is the kind

Model and dataset plugins are imported once, the first time dgbench lists or looks up a model or
a dataset. A plugin that fails to import is an error naming the package, the entry point and the
cause, never a traceback from deep inside dgbench.

dgbench's own built-in benchmark (:mod:`dgbench.builtin`) is loaded the same way, from
:data:`BUILTIN` before the installed packages, so the model zoo and the dataset modules never
import it (nor it them in a circle).
"""
from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import DgbenchError

_loaded: set[str] = set()
# group -> dgbench's own modules that register into it, imported like entry points.
BUILTIN: dict[str, tuple[str, ...]] = {
    "dgbench.models": ("dgbench.builtin.small", "dgbench.builtin.scene_models"),
    "dgbench.datasets": ("dgbench.builtin.digits", "dgbench.builtin.digit_scenes",
                         "dgbench.builtin.digit_crops", "dgbench.builtin.cue_conflict"),
}


class PluginError(DgbenchError):
    """An installed package's dgbench entry point could not be loaded."""


def _package_of(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else ep.value.split(":")[0].split(".")[0]


def load_entry_point(ep: EntryPoint, group: str) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # any failure inside a third-party package is reported the same way
        raise PluginError(
            f"package {_package_of(ep)!r}: entry point {ep.name} = {ep.value!r} in group {group!r} failed to "
            f"load ({type(exc).__name__}: {exc}); fix or uninstall that package"
        ) from None


def load_group(group: str) -> None:
    """Import every entry point of ``group`` once per process (they register themselves)."""
    if group in _loaded:
        return
    _loaded.add(group)
    for module in BUILTIN.get(group, ()):
        importlib.import_module(module)
    for ep in entry_points(group=group):
        load_entry_point(ep, group)


def reset() -> None:
    """Forget which groups were loaded (tests that install a package at run time)."""
    _loaded.clear()

"""Imports flow one way through every package of dgbench, and no modules import each other in a circle.

    cli -> sweep -> protocols/train/results -> engine/runtime -> builtin
        -> models/data/shifts/metrics/corruptions/specs -> errors/config/plugins/compat

Checked statically with ``ast`` over every module: every import statement counts for the layers,
also one inside a function (a deferred import is still a dependency). A module may import any
layer below its own; within a layer only the pairs of ``WITHIN_LAYER``. Cycles are checked twice:
among module-level imports (what runs at ``import``) there must be none; counting deferred
imports too, only the known ones. Known violations are listed with the issue that removes them;
a fixed one fails its test until its entry is deleted, and a new one fails at once.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dgbench"

# Every unit of dgbench (a subpackage or a top-level module), by layer, the top first.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli"),
    ("sweep",),  # grids of runs: launches protocols
    ("protocols", "train", "results"),
    ("engine", "runtime"),
    ("builtin",),  # the built-in benchmark: registers its datasets and models into data/ and models/
    ("models", "data", "shifts", "metrics", "corruptions", "specs"),
    ("errors", "config", "plugins", "compat"),
)
# Units of the parallel branches of issue 20 not merged here yet (builtin and compat),
# placed above so that merging them needs no edit here. Delete this set once they exist.
NOT_YET_MERGED: set[str] = set()
# The imports allowed between units of one layer (importer, imported). Anything else within a
# layer is a violation: models never imports data, nor data models, nor train protocols.
WITHIN_LAYER = {
    ("__main__", "cli"),
    ("protocols", "results"),  # protocols store and read records
    ("protocols", "train"),  # the finetune kind trains
    ("train", "results"),  # a training run's sidecar is a record
    ("engine", "runtime"),
    ("data", "shifts"),  # ImageNet-C's tree is read per corruption shift
    ("shifts", "corruptions"),
    ("specs", "shifts"),  # the spec files declare shifts
    ("plugins", "errors"),
    ("config", "errors"),  # a bad results folder is the user's to fix: one line
}
# Names a lower module may import from the package root (dgbench/__init__.py, the lazy facade of
# the public API): constants only, never the API itself.
ROOT_NAMES = {"__version__"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. dgbench.models.small
    target: str  # the imported dgbench module, e.g. dgbench.data.digits (or dgbench for the root)
    name: str  # with a root import, the name imported from the root (e.g. __version__)
    line: int
    deferred: bool  # inside a function or an `if TYPE_CHECKING:` block: not run at import
    used: bool = True  # False: deferred and never used (a registration run for its side effect,
    #                     or a type-checking-only name)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(tree: ast.Module):
    """(statement, deferred, names used where it runs) for every import statement of the module.

    The names are those of the enclosing function (all of the module at module level, none under
    ``if TYPE_CHECKING:``, which never runs)."""
    def names(scope: ast.AST) -> set[str]:
        return {n.id for n in ast.walk(scope) if isinstance(n, ast.Name)}

    def walk(node: ast.AST, deferred: bool, used: set[str]):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred, used
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, True, names(child))
            elif isinstance(child, ast.If) and _is_type_checking(child):
                yield from walk(child, True, set())
            else:
                yield from walk(child, deferred, used)
    yield from walk(tree, False, names(tree))


def imports_of(source: str, name: str, is_package: bool, modules: set[str]) -> list[Import]:
    """The dgbench imports of module ``name`` (its text ``source``), resolved to module names."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    for node, deferred, names in _statements(ast.parse(source)):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, "") for alias in node.names]
            bound = [alias.asname or alias.name.split(".")[0] for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod
            pairs = [(f"{base}.{a.name}", "") if f"{base}.{a.name}" in modules else (base, a.name)
                     for a in node.names]
            bound = [a.asname or a.name for a in node.names]
        for (target, imported), as_name in zip(pairs, bound):
            if target == "dgbench" or target.startswith("dgbench."):
                while target not in modules and "." in target:  # `import dgbench.x.attr`
                    target = target.rsplit(".", 1)[0]
                used = not deferred or as_name in names
                found.append(Import(name, target, imported, node.lineno, deferred, used))
    return found


MODULES = all_modules()
IMPORTS = [imp for name, path in MODULES.items()
           for imp in imports_of(path.read_text(), name, path.name == "__init__.py", set(MODULES))]


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dgbench"


def layer(u: str) -> int:
    for index, units in enumerate(LAYERS):
        if u in units:
            return index
    raise KeyError(u)


def violation(imp: Import) -> str | None:
    """Why this import breaks the layering, or None."""
    src, dst = unit(imp.source), unit(imp.target)
    if dst == "dgbench":
        if src == "dgbench" or imp.name in ROOT_NAMES:
            return None
        return f"imports {imp.name or 'the package'} from the dgbench facade; import its own module"
    if src == "dgbench" or src == dst:
        return None
    if layer(dst) < layer(src):
        return f"imports the upper layer {dst!r} ({'/'.join(LAYERS[layer(dst)])} is above {src!r})"
    if layer(dst) == layer(src) and (src, dst) not in WITHIN_LAYER:
        return f"imports {dst!r} of its own layer (not in WITHIN_LAYER)"
    return None


def layer_violations(imports: list[Import]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for imp in imports:
        why = violation(imp)
        if why:
            path = MODULES[imp.source].relative_to(REPO) if imp.source in MODULES else imp.source
            out.setdefault((imp.source, unit(imp.target)), []).append(f"{path}:{imp.line} {why}")
    return out


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {unit(m) for m in MODULES} - {"dgbench"}
    placed = {u for units_ in LAYERS for u in units_}
    assert units - placed == set(), f"put these in a layer of LAYERS (tests/test_layering.py): {units - placed}"
    assert placed - units <= NOT_YET_MERGED, f"LAYERS names units that do not exist: {placed - units}"
    assert {"cli", "protocols", "models", "data", "engine", "runtime", "plugins"} <= units


def test_imports_flow_one_way() -> None:
    new = layer_violations(IMPORTS)  # no allow-list: issue 20 removed the last known violation
    assert not new, "imports against the layers:\n" + "\n".join(w for ws in new.values() for w in ws)


def cycles(imports: list[Import], deferred: bool) -> set[frozenset[str]]:
    """The import cycles (strongly connected sets of 2+ modules) among ``imports``.

    Without ``deferred`` only module-level imports count. With it, function-level ones too, but
    not one whose names go unused: a registry loading its members for their side effect
    (``from .. import models`` in models/registry.py runs every ``@register_model``) is one-way
    by design, the members import the registry and the registry knows none of their names.
    """
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source == imp.target or (imp.deferred and not (deferred and imp.used)):
            continue
        graph.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _show(cycle: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(cycle)) + "}"


def test_no_import_cycles_at_module_level() -> None:
    found = cycles(IMPORTS, deferred=False)
    assert not found, "modules importing each other at import time: " + "; ".join(map(_show, found))


def test_no_new_import_cycles_through_deferred_imports() -> None:
    new = cycles(IMPORTS, deferred=True)  # no allow-list: issue 20 removed the last known circle
    assert not new, ("import cycles through function-level imports (a deferred import does not "
                     "make a circle one-way): " + "; ".join(map(_show, new)))


# --- the checker itself: it must see what it claims to check ---------------------------------------

FAKE_MODULES = {"dgbench", "dgbench.models", "dgbench.models.small", "dgbench.models.registry",
                "dgbench.data", "dgbench.data.digits", "dgbench.engine", "dgbench.errors"}


def test_checker_resolves_every_import_form() -> None:
    source = (
        "import os\n"
        "import dgbench.data.digits\n"
        "from .registry import create_model\n"
        "from .. import data\n"
        "from ..errors import DgbenchError\n"
        "from .. import __version__\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..engine import Engine\n"
        "def build():\n"
        "    from dgbench.data.digits import digit_images\n"
        "    return digit_images()\n"
        "def load_all():\n"
        "    from .. import models  # registers them\n")
    got = [(i.target, i.name, i.line, i.deferred, i.used)
           for i in imports_of(source, "dgbench.models.small", False, FAKE_MODULES)]
    assert got == [
        ("dgbench.data.digits", "", 2, False, True),
        ("dgbench.models.registry", "create_model", 3, False, True),
        ("dgbench.data", "", 4, False, True),
        ("dgbench.errors", "DgbenchError", 5, False, True),
        ("dgbench", "__version__", 6, False, True),
        ("dgbench.engine", "Engine", 9, True, False),
        ("dgbench.data.digits", "digit_images", 11, True, True),
        ("dgbench.models", "", 14, True, False),
    ]


def test_checker_flags_violations() -> None:
    def why(source: str, target: str, name: str = "") -> str | None:
        return violation(Import(source, target, name, 1, False))

    assert "upper layer 'engine'" in why("dgbench.models.resnet", "dgbench.engine")
    assert "upper layer 'protocols'" in why("dgbench.engine.classification", "dgbench.protocols.base")
    assert "own layer" in why("dgbench.runtime", "dgbench.engine")
    assert "upper layer 'cli'" in why("dgbench.plugins", "dgbench.cli")
    assert "own layer" in why("dgbench.models.small", "dgbench.data.digits")
    assert "own layer" in why("dgbench.train.segmentation", "dgbench.protocols.base")
    assert "facade" in why("dgbench.results.record", "dgbench", "run")
    assert why("dgbench.results.record", "dgbench", "__version__") is None
    assert why("dgbench.protocols.finetune", "dgbench.train.segmentation") is None
    assert why("dgbench.cli.run", "dgbench.models.registry") is None


def test_checker_finds_cycles() -> None:
    def imp(a: str, b: str, deferred: bool = False, used: bool = True) -> Import:
        return Import(a, b, "", 1, deferred, used)

    imports = [imp("dgbench.a", "dgbench.b"), imp("dgbench.b", "dgbench.c"),
               imp("dgbench.c", "dgbench.a", deferred=True), imp("dgbench.d", "dgbench.e"),
               imp("dgbench.e", "dgbench.d"), imp("dgbench.p.x", "dgbench.p", deferred=True, used=False),
               imp("dgbench.p", "dgbench.p.x")]
    assert cycles(imports, deferred=False) == {frozenset({"dgbench.d", "dgbench.e"})}
    assert cycles(imports, deferred=True) == {frozenset({"dgbench.a", "dgbench.b", "dgbench.c"}),
                                              frozenset({"dgbench.d", "dgbench.e"})}


def test_old_module_names_keep_working_and_nothing_inside_uses_them() -> None:
    """protocols/segmentation.py (split into prediction_scoring and cross_domain_segmentation) is
    kept for users' imports only; protocols/specs.py keeps its names over dgbench.specs."""
    from dgbench.protocols import segmentation, specs
    from dgbench.protocols.cross_domain import run_builtin_scenes
    from dgbench.protocols.cross_domain_segmentation import SEGMENTATION, run_cross_domain_segmentation
    from dgbench.protocols.prediction_scoring import score_predictions

    assert (segmentation.score_predictions, segmentation.SEGMENTATION, segmentation.run_builtin_scenes,
            segmentation.run_cross_domain_segmentation) == (score_predictions, SEGMENTATION, run_builtin_scenes,
                                                             run_cross_domain_segmentation)
    assert {"registry", "load_specs", "get_shift", "protocol_shifts", "PairSpec", "TRANSFORMS_ENV"} <= set(dir(specs))
    users = sorted({imp.source for imp in IMPORTS if imp.target == "dgbench.protocols.segmentation"})
    assert users == [], f"import the split modules instead of the compat module: {users}"

"""Packaging and architecture: the wheel carries the data folders, and imports flow one way."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dgbench.errors import UnknownNameError, suggest

REPO = Path(__file__).resolve().parents[1]

# Lower layers may not import upper ones (cli -> engine/protocols/train/results -> models/data/...).
UPPER = ("dgbench.cli", "dgbench.engine", "dgbench.protocols", "dgbench.train", "dgbench.results")
LOWER = ("models", "data", "metrics", "shifts.py", "errors.py", "config.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out.add(mod)
                out.update(f"{mod}.{a.name}" for a in node.names)
            elif node.module:
                out.add(node.module)
    return out


def _lower_files() -> list[Path]:
    files: list[Path] = []
    for name in LOWER:
        p = REPO / "dgbench" / name
        files += sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])
    return files


@pytest.mark.parametrize("path", _lower_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_lower_layers_do_not_import_upper_ones(path: Path) -> None:
    bad = sorted(m for m in _imports(path) if m.startswith(UPPER))
    assert not bad, f"{path.relative_to(REPO)} imports upper layer(s): {bad}"


def test_import_checker_sees_relative_imports(tmp_path: Path) -> None:
    # The architecture test is only worth something if it catches a violation.
    fake = REPO / "dgbench" / "models" / "_probe_for_test.py"
    fake.write_text("from ..engine import evaluate\n")
    try:
        assert "dgbench.engine" in _imports(fake)
    finally:
        fake.unlink()


def test_no_merge_leftovers_in_the_source_tree() -> None:
    """``*.orig`` / ``*.rej`` files (what a merge or patch leaves behind) are not part of dgbench."""
    leftovers = sorted(str(p.relative_to(REPO)) for pat in ("*.orig", "*.rej") for p in (REPO / "dgbench").rglob(pat))
    assert not leftovers, leftovers


def test_suggest_offers_close_names() -> None:
    known = ["resnet50_ibn_a", "resnet50_ibn_b", "resnet101_ibn_a", "densenet121_ibn_a"]
    assert suggest("resnet50_ibn_x", known)[0] in {"resnet50_ibn_a", "resnet50_ibn_b"}
    assert suggest("densenet121", known) == ["densenet121_ibn_a"]
    err = UnknownNameError("model", "resnet50_ibm_a", known)
    assert "did you mean 'resnet50_ibn_a'" in str(err)


def _shipped_files() -> dict[str, Path]:
    """Every file the wheel must carry: its name inside the wheel -> the file in the checkout."""
    files: dict[str, Path] = {}
    for folder, pattern in (("transforms", "*.toml"), ("leaderboards", "*.csv"), ("leaderboards", "*.md"),
                            ("leaderboards", "paper/*.csv"), ("leaderboards", "paper/comparisons/*.csv"),
                            ("leaderboards", "*.provenance.json"), ("leaderboards", "*.outcomes.json")):
        files.update({f"dgbench/{folder}/{f.relative_to(REPO / folder).as_posix()}": f
                      for f in (REPO / folder).glob(pattern)})
    assets = REPO / "dgbench" / "assets"
    files.update({f"dgbench/{f.relative_to(REPO / 'dgbench').as_posix()}": f
                  for f in assets.rglob("*") if f.is_file()})
    return files


def test_wheel_ships_transforms_and_leaderboards(tmp_path: Path, built_wheel: Path) -> None:
    wheel, target = built_wheel, tmp_path / "site"
    shipped = _shipped_files()
    # The data the package reads at run time, byte for byte: the paper's numbers, the synset list,
    # the checkpoints and their manifests.
    assert any(n.startswith("dgbench/leaderboards/paper/") for n in shipped)
    assert "dgbench/assets/imagenet_synsets.txt" in shipped
    assert "dgbench/assets/checkpoints/digits/manifest.json" in shipped
    assert "dgbench/assets/site/site.js" in shipped and "dgbench/assets/site/site.css" in shipped  # the leaderboard site
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name, path in sorted(shipped.items()):
            assert name in names, f"{name} missing from the wheel"
            assert zf.read(name) == path.read_bytes(), f"{name} differs in the wheel"
    # and nothing stale (a withdrawn checkpoint left in a build folder) ships beside them
    stale = {n for n in names if n.startswith(("dgbench/assets/", "dgbench/leaderboards/"))} - set(shipped)
    assert not stale, f"files in the wheel that the checkout does not have: {sorted(stale)}"
    assert not any(n.startswith("tests/") for n in names)
    # every module of every subpackage (dgbench.engine was once left out of pyproject's list)
    for module in sorted((REPO / "dgbench").rglob("*.py")):
        name = module.relative_to(REPO).as_posix()
        if "__pycache__" not in name:
            assert name in names, f"{name} missing from the wheel (is its package in pyproject's packages?)"

    # Installed from the wheel (no checkout on the path), dgbench finds its data folders inside itself.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "from dgbench.config import data_dir; print(data_dir('transforms')); print(data_dir('leaderboards'))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    for line in out.stdout.split():
        assert Path(line).is_dir() and Path(line).is_relative_to(target), line


def test_every_public_name_resolves() -> None:
    import dgbench

    for name in dgbench.__all__:
        assert getattr(dgbench, name) is not None, name
    with pytest.raises(AttributeError):
        dgbench.no_such_thing  # noqa: B018

"""Result kinds as a registry: a toy kind registered from here (no edit to the generic modules)
shows up in `table`, `leaderboard publish`, `check` and the site; old records infer their kind."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.results.catalogue import Metric
from dgbench.results.check import check
from dgbench.results.frame import records_to_frame
from dgbench.results.kinds import ResultKind, infer_kind, register_kind, unregister_kind
from dgbench.results.leaderboard import load_leaderboard, publish
from dgbench.results.record import new_record
from dgbench.results.site import build_site
from dgbench.results.store import ResultStore

from results_fixtures import STAMP

TOY = ResultKind("toy", ("shift",), "shift", published={"classification": ("toy_score",)},
                 shown={"classification": ("toy_score",)}, aliases={"score": "toy_score"},
                 drop_from="the calm condition", describe="rows: models; columns: weather",
                 metrics=(Metric("toy_score", "toy score", "%", True),))


@pytest.fixture
def toy():
    register_kind(TOY)
    yield TOY
    unregister_kind("toy")


def toy_records(score: float = 80.0) -> list[dict]:
    recs = []
    for model, calm, storm in (("m1", score, 60.0), ("m2", 90.0, 85.5)):
        recs.append(new_record(kind="toy", task="classification", protocol="toy-proto", dataset="toyland",
                               model=model, shift="calm", metrics={"toy_score": calm}, **STAMP))
        recs.append(new_record(kind="toy", task="classification", protocol="toy-proto", dataset="toyland",
                               model=model, shift="storm", reference="calm", metrics={"toy_score": storm},
                               drop={"toy_score": storm - calm}, **STAMP))
    return recs


def test_a_toy_kind_shows_up_everywhere(toy, tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").append(toy_records())
    runner = CliRunner()
    res = runner.invoke(app, ["table", "--results", str(tmp_path / "res"), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "model,calm,storm" in res.output and "m1,80.00,60.00 (20.00)" in res.output  # a fall is a loss
    res = runner.invoke(app, ["leaderboard", "publish", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    csv_path = tmp_path / "lb" / "toyland-toy-proto.csv"
    lb = load_leaderboard(csv_path)
    assert lb.attrs["kind"] == "toy" and list(lb.columns[:-1]) == TOY.schema("classification")
    assert "toy_score_drop_pct" in lb.columns and (tmp_path / "lb" / "toyland-toy-proto.md").is_file()
    res = runner.invoke(app, ["check", "--baseline", str(csv_path), "--results", str(tmp_path / "res")])
    assert res.exit_code == 0 and "check passed: 8 value(s)" in res.output, res.output
    ResultStore(tmp_path / "moved").append(toy_records(score=81.0))
    assert not check(csv_path, tmp_path / "moved").ok  # a moved number fails the check
    build_site([csv_path], tmp_path / "site")
    page = (tmp_path / "site" / "toyland-toy-proto.html").read_text()
    assert "toy score (%)" in page and '<span class="d">(20.00)</span>' in page
    assert 'href="toyland-toy-proto.html"' in (tmp_path / "site" / "index.html").read_text()


def test_every_new_record_names_its_kind_and_old_ones_are_inferred_at_load() -> None:
    assert new_record(task="classification", protocol="p", shift="origin", **STAMP)["kind"] == "appearance"
    old = [{"key": "a", "protocol": "finetune", "fraction": 0.1, "train_domain": "x", "test_domain": "y"},
           {"key": "b", "protocol": "cross-domain", "train_domain": "x", "test_domain": "y"},
           {"key": "c", "protocol": "appearance", "shift": "origin"},
           {"key": "d", "kind": "divergence", "protocol": "divergence"}]
    assert [infer_kind(r) for r in old] == ["finetune", "cross-domain", "appearance", "divergence"]
    assert list(records_to_frame(old)["kind"]) == ["finetune", "cross-domain", "appearance", "divergence"]


def test_the_generic_modules_name_no_kind() -> None:
    """Tables, leaderboards, the check, the plot and the site dispatch through the registry."""
    import re

    root = Path(__file__).resolve().parents[1] / "dgbench" / "results"
    for name in ("frame.py", "tables.py", "leaderboard.py", "check.py", "plot.py", "site.py", "catalogue.py"):
        text = (root / name).read_text()
        assert not re.search(r"""==\s*["'](appearance|cross-domain|finetune|divergence)["']""", text), name
        assert "from .divergence" not in text, name


def test_the_results_modules_import_one_way() -> None:
    """No import cycle among dgbench/results/ modules, counting imports inside functions too
    (the built-in kinds are found by name, as protocol kinds are, not imported by results.kinds)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "dgbench" / "results"
    mods = {p.stem for p in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for p in root.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dgbench.results."):
                deps.add(node.module.split(".")[2])
        graph[p.stem] = (deps & mods) - {p.stem}

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            for y in graph[todo.pop()] - seen:
                seen.add(y)
                todo.append(y)
        return b in seen

    cycles = sorted(f"{a} -> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not cycles, cycles
    assert "kinds" in graph["divergence"] and "divergence" not in set().union(*graph.values())

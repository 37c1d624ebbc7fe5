"""Result kinds as a registry: a toy protocol kind added from here (its Protocol class found by
name, its TOML spec in a folder of its own, its ResultKind registered; no edit to dgbench) shows
up in `protocols`, runs, and shows up in `table`, `leaderboard publish`, `check` (also `--rerun`)
and the site; old records infer their kind."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.config import results_dir
from dgbench.protocols import base as protocol_base
from dgbench.protocols.base import Protocol, RunRequest, RunSummary, reject_options
from dgbench.protocols.measure import MeasureLoop
from dgbench.results.catalogue import Metric
from dgbench.results.check import check
from dgbench.results.frame import records_to_frame
from dgbench.results.kinds import ResultKind, infer_kind, register_kind, unregister_kind
from dgbench.results.leaderboard import load_leaderboard
from dgbench.results.record import new_record
from dgbench.results.store import ResultStore
from dgbench.runtime import Runtime

from results_fixtures import STAMP

TOY = ResultKind("toy", ("shift",), "shift", published={"classification": ("toy_score",)},
                 shown={"classification": ("toy_score",)}, aliases={"score": "toy_score"},
                 drop_from="the calm condition", describe="rows: models; columns: weather",
                 metrics=(Metric("toy_score", "toy score", "%", True),))

# What the toy kind "measures": a score per model and weather (the first weather is the reference).
SCORES = {"m1": {"calm": 80.0, "storm": 60.0}, "m2": {"calm": 90.0, "storm": 85.5}}
TOY_SPEC = """
[protocols.toy-proto]
kind = "toy"
description = "Toy weather protocol (a kind added by a test)."
weathers = ["calm", "storm"]
"""


def toy_record(model: str, weather: str, calm: float, score: float, protocol: str = "toy-proto") -> dict:
    ref = {} if weather == "calm" else dict(reference="calm", drop={"toy_score": score - calm})
    return new_record(kind="toy", task="classification", protocol=protocol, dataset="toyland", model=model,
                      shift=weather, metrics={"toy_score": score}, **ref, **STAMP)


class ToyProtocol(Protocol):
    """A protocol kind as a plugin writes one: its own TOML field, the one measure loop."""

    kind = "toy"
    fields = {"weathers": list}
    required = ("weathers",)

    def datasets(self) -> Sequence[str]:
        return ["toyland"]

    def conditions(self) -> Sequence[str]:
        return list(self.spec.params["weathers"])

    def run(self, request: RunRequest, runtime: Runtime) -> RunSummary:
        reject_options(request, self.name)
        models = request.model.split(",") if isinstance(request.model, str) else list(request.model)
        store = ResultStore(results_dir(request.results)) if request.store else None
        loop = MeasureLoop(store, self.name, request.force, runtime.is_main)
        out: list[dict] = []
        for model in models:
            scores = SCORES[model]
            recs = [toy_record(model, w, scores["calm"], scores[w], self.name) for w in self.conditions()]
            out += loop.unit([r["key"] for r in recs], lambda missing, stored, recs=recs: recs)[0]
        return RunSummary(out, loop.computed, loop.reused, dataset="toyland", kind=self.kind)

    def rerun_request(self, dataset: str, rows) -> RunRequest:
        return RunRequest(model=sorted(set(rows["model"])), dataset=dataset)


@pytest.fixture
def toy(monkeypatch, tmp_path: Path):
    """The toy kind, registered as a plugin would be: its class by name (KINDS, as the entry-point
    group does for installed packages), its spec in a folder on $DGBENCH_TRANSFORMS, its results."""
    specs = tmp_path / "toy-specs"
    specs.mkdir()
    (specs / "toy.toml").write_text(TOY_SPEC)
    monkeypatch.setenv("DGBENCH_TRANSFORMS", str(specs))
    monkeypatch.setitem(protocol_base.KINDS, "toy", f"{__name__}:ToyProtocol")
    register_kind(TOY)
    yield TOY
    unregister_kind("toy")
    protocol_base._kind_cache.pop("toy", None)


def toy_records(score: float = 80.0) -> list[dict]:
    return [toy_record(model, w, calm, value) for model, (calm, storm) in (("m1", (score, 60.0)), ("m2", (90.0, 85.5)))
            for w, value in (("calm", calm), ("storm", storm))]


def test_a_toy_kind_shows_up_everywhere(toy, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["protocols", "--format", "json"])
    assert res.exit_code == 0, res.output
    listed = {p["name"]: p for p in json.loads(res.output)}
    assert listed["toy-proto"]["kind"] == "toy" and listed["toy-proto"]["conditions"] == ["calm", "storm"]
    assert listed["toy-proto"]["datasets"] == ["toyland"] and listed["toy-proto"]["source"].endswith("toy.toml")
    res = runner.invoke(app, ["protocols"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "toy-proto" in res.output and "Toy weather protocol" in res.output, res.output

    res = runner.invoke(app, ["run", "--protocol", "toy-proto", "--model", "m1,m2", "--results", str(tmp_path / "res"),
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    assert [(r["kind"], r["model"], r["shift"]) for r in map(json.loads, res.output.splitlines())] == [
        ("toy", "m1", "calm"), ("toy", "m1", "storm"), ("toy", "m2", "calm"), ("toy", "m2", "storm")]
    assert sorted(r["key"] for r in ResultStore(tmp_path / "res").iter_records()) == sorted(
        r["key"] for r in toy_records())  # stored once, by the measure loop

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
    res = runner.invoke(app, ["check", "--baseline", str(csv_path), "--results", str(tmp_path / "rerun"), "--rerun"])
    assert res.exit_code == 0 and "check passed: 8 value(s)" in res.output, res.output
    assert len(list(ResultStore(tmp_path / "rerun").iter_records())) == 4  # measured again, by its kind
    ResultStore(tmp_path / "moved").append(toy_records(score=81.0))
    assert not check(csv_path, tmp_path / "moved").ok  # a moved number fails the check

    res = runner.invoke(app, ["leaderboard", "site", str(tmp_path / "lb"), "--out", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
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

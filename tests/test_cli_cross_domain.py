"""`dgbench run --protocol cross-domain` from the command line: the built-in digits and digit-scenes
pairs (shipped checkpoints), Cityscapes <-> GTA5 on fixture trees, the results store, tables,
leaderboards and the errors a user can make."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import DgbenchError
from dgbench.models import create_model
from dgbench.models.deeplab import scene_manifest
from dgbench.results.store import ResultStore
from seg_fixtures import make_cityscapes, make_gta5

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if isinstance(res.exception, DgbenchError):  # dgbench's main() prints these and exits with 2
        return 2, res.output + str(res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def cells(records: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["train_domain"], r["test_domain"]): r for r in records}


def check_2x2(records: list[dict], pair: tuple[str, str], metric: str) -> None:
    a, b = pair
    c = cells(records)
    assert set(c) == {(a, a), (a, b), (b, b), (b, a)}
    for train, test in ((a, b), (b, a)):
        cross, own = c[(train, test)], c[(train, train)]
        assert own["metrics"][metric] > cross["metrics"][metric]  # the domain gap of the shipped checkpoints
        assert cross["reference"] == train
        assert cross["drop"][metric] == pytest.approx(cross["metrics"][metric] - own["metrics"][metric])
    assert all(r["protocol"] == "cross-domain" for r in records)


def test_digits_pair_prints_the_2x2_stores_and_reuses(tmp_path: Path) -> None:
    res = str(tmp_path / "results")
    code, out = run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "digits",
                    "--results", res, "--no-progress")
    assert code == 0, out
    assert "small_resnet_ibn_b" in out and "typeset-digits" in out and "4 result(s) computed, 0 reused" in out
    stored = ResultStore(res).records("cross-domain")
    assert len(stored) == 4 and {r["model"] for r in stored} == {"small_resnet_ibn_b"}
    check_2x2(stored, ("digits", "typeset-digits"), "top1_acc")
    assert cells(stored)[("digits", "digits")]["metrics"]["top1_acc"] == pytest.approx(98.66, abs=0.01)
    # the same command again: nothing recomputed, the same cells as JSON lines
    code, out = run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "typeset-digits",
                    "--results", res, "--format", "json")
    assert code == 0, out
    again = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["key"] for r in again] == [r["key"] for r in stored]
    assert len(ResultStore(res).records("cross-domain")) == 4
    # --force recomputes and appends
    code, out = run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "digits",
                    "--results", res, "--force", "--no-progress")
    assert code == 0 and "4 result(s) computed" in out, out
    # ... as new lines; readers count one result per key, the last stored
    assert len(ResultStore(res).records("cross-domain", copies=True)) == 8
    assert len(ResultStore(res).records("cross-domain")) == 4


def test_digit_scenes_pair_and_both_pairs_in_tables_and_leaderboards(tmp_path: Path) -> None:
    res = str(tmp_path / "results")
    code, out = run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "digit-scenes",
                    "--results", res, "--no-progress")
    assert code == 0, out
    # one table per metric: the cells carry 95 % intervals, shown one metric per cell
    assert "deeplab_small_resnet_ibn_b" in out and "mIoU %" in out and "pixel accuracy %" in out
    stored = ResultStore(res).records("cross-domain")
    assert len(stored) == 4 and all(r["task"] == "segmentation" for r in stored)
    check_2x2(stored, ("digit-scenes", "typeset-digit-scenes"), "miou")
    entry = scene_manifest()["deeplab_small_resnet_ibn_b-digit-scenes.pth"]
    own = cells(stored)[("digit-scenes", "digit-scenes")]["metrics"]["miou"]
    assert own == pytest.approx(entry["eval"]["digit-scenes"]["miou"], abs=0.5)
    code, out = run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "digit-scenes",
                    "--results", res, "--no-progress")
    assert code == 0 and "0 result(s) computed, 4 reused" in out, out

    # digits as well: each pair is one 2x2 table and one leaderboard
    assert run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "digits",
               "--results", res, "--no-progress")[0] == 0
    # (--no-intervals: metrics joined in one table; with the segmentation cells' intervals, a table per metric)
    code, out = run("table", "--protocol", "cross-domain", "--results", res, "--format", "markdown", "--no-intervals")
    assert code == 0, out
    titles = [line for line in out.splitlines() if "cross-domain:" in line]
    assert len(titles) == 2, out
    assert any(t.startswith("**digits-typeset-digits") or "digits-typeset-digits ·" in t for t in titles), titles
    assert any("digit-scenes-typeset-digit-scenes" in t for t in titles), titles
    lb = tmp_path / "lb"
    code, out = run("leaderboard", "publish", "--results", res, "--out", str(lb))
    assert code == 0, out
    assert sorted(p.name for p in lb.glob("*.csv")) == [
        "digit-scenes-typeset-digit-scenes-cross-domain.csv", "digits-typeset-digits-cross-domain.csv",
    ]
    for f in lb.glob("*.csv"):
        assert len(f.read_text().strip().splitlines()) == 1 + 4  # header + one 2x2


def test_cityscapes_gta5_from_flags(tmp_path: Path) -> None:
    cs = make_cityscapes(tmp_path / "cityscapes", split="val", cities=("frankfurt",), per_city=2, seed=2)
    gta = make_gta5(tmp_path / "gta5", n=8, seed=3)
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pth"
    torch.save(create_model("deeplab_resnet50_ibn_b").state_dict(), ckpt)
    res, preds = str(tmp_path / "results"), tmp_path / "preds"
    args = ["run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "cityscapes-gta5",
            "--checkpoint-a", str(ckpt), "--checkpoint-b", str(ckpt), "--cityscapes", str(cs), "--gta5", str(gta),
            "--limit", "1", "--results", res, "--no-progress"]
    code, out = run(*args, "--save-predictions", str(preds), "--flip")
    assert code == 0, out
    stored = ResultStore(res).records("cross-domain")
    assert len(stored) == 4 and {r["dataset"] for r in stored} == {"cityscapes", "gta5"}  # each cell's test set
    assert {r["model"] for r in stored} == {"deeplab_resnet50_ibn_b"}
    assert set(cells(stored)) == {("cityscapes", "cityscapes"), ("cityscapes", "gta5"), ("gta5", "gta5"), ("gta5", "cityscapes")}
    assert all(r["preprocessing"] == {"mode": "whole", "scale": 1.0, "flip": True} and r["num_samples"] == 1 for r in stored)
    assert sorted(p.name for p in preds.iterdir()) == ["cityscapes-to-cityscapes", "cityscapes-to-gta5", "gta5-to-cityscapes", "gta5-to-gta5"]
    assert list((preds / "cityscapes-to-cityscapes" / "labelIds").glob("*_labelIds.png"))
    code, out = run(*args, "--flip")
    assert code == 0 and "0 result(s) computed, 4 reused" in out, out
    code, out = run("table", "--protocol", "cross-domain", "--results", res, "--with-paper", "--format", "markdown")
    assert code == 0, out
    assert "| deeplab_resnet50_ibn_b | dgbench | cityscapes |" in out and "| deeplab_resnet50_ibn_b | paper | cityscapes |" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--protocol", "cross-domian"], "did you mean 'cross-domain'"),
    (["--protocol", "cross-domain", "--data", "/nonexistent/imagenet"], "cityscapes-gta5 (cityscapes <-> gta5)"),
    (["--protocol", "cross-domain", "--dataset", "digit-scene"], "did you mean 'digit-scenes'"),
    (["--protocol", "cross-domain", "--dataset", "cityscapes-gta5"], "needs --checkpoint-a"),
    (["--protocol", "cross-domain", "--dataset", "digits", "--flip"], "--flip: not used by the cross-domain protocol on the digits pair"),
    (["--protocol", "cross-domain", "--dataset", "digits", "--shifts", "origin"], "not used by the cross-domain"),
])
def test_errors_say_what_exists(args: list[str], message: str, tmp_path: Path) -> None:
    code, out = run("run", "--model", "ibn_b", *args, "--results", str(tmp_path))
    assert code != 0
    assert message in " ".join(out.split()), out


def test_missing_cityscapes_root_gives_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DGBENCH_CITYSCAPES", raising=False)
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"")
    code, out = run("run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "cityscapes-gta5",
                    "--checkpoint-a", str(ckpt), "--checkpoint-b", str(ckpt), "--results", str(tmp_path))
    assert code != 0 and "DGBENCH_CITYSCAPES" in " ".join(out.split()), out

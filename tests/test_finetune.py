"""The finetune protocol (Table 8): nested seeded subsets, fine-tuning from a source checkpoint,
resuming bit-exactly, the table beside the paper's numbers (and Table 7), and the bad inputs."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import DgbenchError
from dgbench.protocols import RunRequest, run
from dgbench.protocols.finetune import nested_subsets, parse_fractions, subset_order, subset_size
from dgbench.results.record import new_record

runner = CliRunner()

# A protocol of the finetune kind small enough for a test: 2 iterations per fraction.
TINY = """
[protocols.finetune-tiny]
kind = "finetune"
pairs = ["digit-scenes", "cityscapes-gta5"]
fractions = [0.1, 0.2]
seeds = [0]

[protocols.finetune-tiny.recipes.digit-scenes]
batch_size = 8
iterations = 2

[protocols.finetune-tiny.recipes.cityscapes-gta5]
batch_size = 2
iterations = 1
crop_size = [32, 32]
"""


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.toml").write_text(TINY)
    monkeypatch.setenv("DGBENCH_TRANSFORMS", str(specs))
    return tmp_path / "results"


# ----------------------------------------------------------------------------- subsets
def test_subsets_are_nested_seeded_and_stable() -> None:
    fr = [0.1, 0.2, 0.3, 1.0]
    a = nested_subsets(400, fr, seed=0)
    assert [len(a[f]) for f in fr] == [40, 80, 120, 400]
    for small, large in zip(fr, fr[1:]):
        assert set(a[small]) <= set(a[large])
    assert a[1.0] == list(range(400))  # fraction 1.0: every image
    assert nested_subsets(400, fr, seed=0) == a  # the same on every call
    b = nested_subsets(400, fr, seed=1)
    assert b[0.1] != a[0.1] and set(b[0.2]) >= set(b[0.1])
    # Pinned: the subsets are part of published results, so the selection rule must not drift.
    assert subset_order(10, 0) == [4, 0, 6, 9, 7, 2, 1, 5, 8, 3]
    assert subset_size(0.3, 400) == 120 and subset_size(0.001, 400) == 1 and subset_size(1.0, 7) == 7


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1", "ten", "0.1,2"])
def test_fraction_outside_0_1_is_an_error_naming_it(bad: str) -> None:
    with pytest.raises(DgbenchError) as exc:
        parse_fractions(bad)
    msg = str(exc.value)
    assert "(0, 1]" in msg and "\n" not in msg
    assert repr(bad.split(",")[-1] if "," in bad else bad) in msg


def test_fractions_parse_sorted_unique() -> None:
    assert parse_fractions("1.0,0.1,0.2,0.1") == [0.1, 0.2, 1.0]


# ----------------------------------------------------------------------------- training
def test_resumed_finetune_is_bit_exact_on_cpu(tmp_path: Path) -> None:
    from dgbench.models.deeplab import builtin_scene_checkpoints
    from dgbench.train.segmentation import train_segmentation

    model = "deeplab_small_resnet_ibn_a"
    init = builtin_scene_checkpoints(model)["typeset-digit-scenes"]
    idx = nested_subsets(400, [0.05], seed=3)[0.05]
    common = dict(init_weights=init, indices=idx, iterations=4, batch_size=8, crop_size=(64, 64),
                  scale_range=(0.75, 1.25), aspect_range=(0.9, 1.1), mirror=False, seed=3, device="cpu",
                  num_workers=0, progress=False)
    whole = train_segmentation("digit-scenes", model, out_dir=tmp_path / "whole", resume=False, **common)
    part = train_segmentation("digit-scenes", model, out_dir=tmp_path / "part", resume=False, stop_after=2, **common)
    assert part.weights is None and part.iteration == 2
    rest = train_segmentation("digit-scenes", model, out_dir=tmp_path / "part", resume=True, **common)
    assert rest.resumed_from == 2 and rest.iteration == 4
    assert part.losses + rest.losses == whole.losses
    a, b = torch.load(whole.weights, weights_only=True), torch.load(rest.weights, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The starting weights and the subset are part of the run's identity: another subset cannot resume it.
    with pytest.raises(Exception, match="subset_sha256"):
        train_segmentation("digit-scenes", model, out_dir=tmp_path / "part", resume=True,
                           **{**common, "indices": idx[:-1]})


def test_builtin_finetune_records_reuse_and_table(tiny: Path) -> None:
    req = RunRequest(model="ibn_a", dataset="digit-scenes", results=tiny, device="cpu", limit=16, progress=False)
    summary = run("finetune-tiny", req)
    recs = summary.records
    assert summary.computed == 3 and [r["fraction"] for r in recs] == [0.0, 0.1, 0.2]
    src, f10, f20 = recs
    assert src["train_domain"] == "typeset-digit-scenes" and src["test_domain"] == "digit-scenes"
    assert src["seed"] is None and "finetune" not in src  # source only: the shipped model, evaluated
    assert f10["subset"]["images"] == 40 and f20["subset"]["images"] == 80 and f10["subset"]["of"] == 400
    assert f10["preprocessing"]["recipe"]["iterations"] == 2 and f10["finetune"]["iterations"] == 2
    assert f10["weights_sha256"] == src["weights_sha256"]  # the source weights identify the work
    assert f10["finetune"]["finetuned_sha256"] != src["weights_sha256"]
    assert len({r["key"] for r in recs}) == 3 and all(r["num_samples"] == 16 for r in recs)
    again = run("finetune-tiny", RunRequest(model="ibn_a", dataset="digit-scenes", results=tiny, device="cpu",
                                            limit=16, progress=False))
    assert again.computed == 0 and [r["key"] for r in again.records] == [r["key"] for r in recs]

    res = runner.invoke(app, ["table", "--protocol", "finetune-tiny", "--results", str(tiny), "--format", "csv"])
    assert res.exit_code == 0, res.output
    header, row = res.output.strip().splitlines()[:2]
    assert header.split(",")[-3:] == ["source only", "10%", "20%"]
    assert row.startswith("deeplab_small_resnet_ibn_a,typeset-digit-scenes → digit-scenes,")
    png = tiny / "ft.png"
    res = runner.invoke(app, ["plot", "--protocol", "finetune-tiny", "--results", str(tiny), "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_subset_too_small_for_a_batch(tiny: Path) -> None:
    req = RunRequest(model="ibn_a", dataset="digit-scenes", results=tiny, device="cpu", progress=False,
                     options={"fractions": "0.01,0.5"})
    with pytest.raises(DgbenchError, match=r"--fractions 0.01: 4 of the 400 digit-scenes train images, fewer than one batch of 8"):
        run("finetune-tiny", req)


def _finetune_error(model: str, num_classes: int, tiny: Path, tmp_path: Path) -> tuple[Path, str]:
    """The one-line error of fine-tuning ``ibn_a`` on a Cityscapes tree from a ``model`` checkpoint."""
    from dgbench.models import create_model
    from seg_fixtures import make_cityscapes

    cs = make_cityscapes(tmp_path / "cs", "train", per_city=10)
    make_cityscapes(cs, "val", per_city=1)
    ckpt = tmp_path / f"{model}-{num_classes}.pth"
    torch.save(create_model(model, num_classes=num_classes).state_dict(), ckpt)
    req = RunRequest(model="ibn_a", dataset="cityscapes-gta5", results=tiny, device="cpu", progress=False,
                     options={"checkpoint_b": str(ckpt), "roots": {"cityscapes": str(cs)}})
    with pytest.raises(DgbenchError) as exc:
        run("finetune-tiny", req)
    return ckpt, str(exc.value)


def test_checkpoint_with_other_classes_is_refused(tiny: Path, tmp_path: Path) -> None:
    ckpt, msg = _finetune_error("deeplab_resnet50_ibn_a", 11, tiny, tmp_path)
    assert str(ckpt) in msg and "11-class model" in msg and "cityscapes has 19 classes" in msg and "\n" not in msg


def test_checkpoint_of_another_architecture_names_keys_and_what_it_holds(tiny: Path, tmp_path: Path) -> None:
    """An ImageNet-style classifier passed where a DeepLab is fine-tuned: torch's message cut to one
    line said only "Error(s) in loading state_dict for DeepLab:"; now the keys and the file's shape."""
    from dgbench.results.store import ResultStore

    ckpt, msg = _finetune_error("resnet18_ibn_b", 19, tiny, tmp_path)
    assert "\n" not in msg and f"checkpoint {ckpt} does not fit deeplab_resnet50_ibn_a" in msg, msg
    assert re.search(r"missing keys \(\d+\): backbone\.bn1\.weight, backbone\.conv1\.weight, ", msg), msg
    assert re.search(r"unexpected keys \(\d+\): bn1\.weight, conv1\.weight, fc\.weight, ", msg), msg
    assert "its keys suggest a ResNet with IN after blocks (IBN-b style), 19 classes" in msg
    assert not ResultStore(tiny).records("finetune-tiny")  # nothing stored


def test_pair_of_checkpoints_needs_exactly_one(tiny: Path, tmp_path: Path) -> None:
    req = RunRequest(model="ibn_a", dataset="cityscapes-gta5", results=tiny, device="cpu", progress=False)
    with pytest.raises(DgbenchError, match="either --checkpoint-b"):
        run("finetune-tiny", req)


# ----------------------------------------------------------------------------- tables
def _rec(model: str, fraction: float, seed: int | None, miou: float) -> dict:
    return new_record(task="segmentation", protocol="finetune", model=model, dataset="cityscapes",
                      dataset_fingerprint="fp", train_domain="gta5", test_domain="cityscapes", fraction=fraction,
                      subset={"fraction": fraction}, seed=seed, metrics={"miou": miou, "pixel_acc": 90.0},
                      versions={}, git_commit=None, started_at="2026-01-01T00:00:00+00:00")


def test_table_joins_paper_numbers_and_table_7() -> None:
    from dgbench.results.tables import render_table

    recs = [_rec("deeplab_resnet50", 0.0, None, 20.0), _rec("deeplab_resnet50_ibn_a", 0.0, None, 27.5)]
    recs += [_rec("deeplab_resnet50_ibn_a", 0.1, s, m) for s, m in ((0, 50.0), (1, 52.0))]
    out = render_table(recs, fmt="csv", with_paper=True)
    lines = out.splitlines()
    assert lines[0] == "model,source,train \\ test,source only,10%,20%,30%,100%"
    assert "deeplab_resnet50_ibn_a,dgbench,gta5 → cityscapes,27.50,51.00 ± 1.00 n=2,–,–,–" in lines
    assert "deeplab_resnet50_ibn_a,paper,gta5 → cityscapes,29.64,56.50,60.50,65.50,68.78" in lines
    assert "deeplab_resnet50,paper,gta5 → cityscapes,22.17,52.70,54.20,58.70,63.84" in lines
    # Table 7: the paper's domain-adaptation rows beside the measured source-only gain.
    assert any(l.startswith("deeplab_resnet50 / deeplab_resnet50_ibn_a source only (gta5 → cityscapes),dgbench,"
                            "20.00 / 27.50,7.50,without") for l in lines)
    assert any(l.startswith("GAN DA (gta5 → cityscapes),paper,29.6 / 37.1,7.5,with") for l in lines)


def test_leaderboard_roundtrip_and_check(tmp_path: Path) -> None:
    from dgbench.results.check import check_leaderboard
    from dgbench.results.leaderboard import load_leaderboard, publish

    recs = [_rec("deeplab_resnet50_ibn_a", f, 0, 40.0 + 10 * f) for f in (0.1, 1.0)]
    paths = publish(recs, tmp_path)
    lb = load_leaderboard(paths[0])
    assert lb.attrs["kind"] == "finetune" and list(lb["fraction"]) == ["0.1", "1"]
    assert check_leaderboard(paths[0], recs).ok
    moved = [_rec("deeplab_resnet50_ibn_a", 0.1, 0, 45.0), recs[1]]
    res = check_leaderboard(paths[0], moved)
    assert not res.ok and list(res.failures["key"]) == ["deeplab_resnet50_ibn_a · gta5→cityscapes @ 0.1"]
    bad = tmp_path / "bad.csv"
    bad.write_text(paths[0].read_text().replace(",0.1,", ",1.5,"))
    with pytest.raises(DgbenchError, match="fraction"):
        load_leaderboard(bad)


def test_paper_files_load() -> None:
    from dgbench.results.comparison import load_comparisons
    from dgbench.results.leaderboard import load_paper

    paper = load_paper()
    t8 = paper[paper["protocol"] == "finetune"]
    assert len(t8) == 10 and set(t8["fraction"]) == {"0", "0.1", "0.2", "0.3", "1"}
    t7 = load_comparisons()
    assert len(t7) == 4 and math.isclose(t7["gain_pct"].sum(), 27.5)


def test_rerun_request_from_published_rows(tmp_path: Path) -> None:
    """`dgbench check --rerun` re-runs a finetune leaderboard: its pair, models, fractions and seeds."""
    from dgbench.protocols import get
    from dgbench.results.leaderboard import load_leaderboard, publish

    recs = [new_record(task="segmentation", protocol="finetune", model=m, dataset="digit-scenes",
                       train_domain="typeset-digit-scenes", test_domain="digit-scenes", fraction=f, subset={"fraction": f}, seed=s,
                       metrics={"miou": 40.0 + (s or 0), "pixel_acc": 90.0}, versions={}, git_commit=None, started_at="x")
            for m in ("deeplab_small_resnet", "deeplab_small_resnet_ibn_a") for f in (0.0, 0.1, 1.0)
            for s in ((None,) if f == 0 else (0, 1))]
    lb = load_leaderboard(publish(recs, tmp_path)[0])
    req = get("finetune").rerun_request("digit-scenes", lb)
    assert req.dataset == "digit-scenes" and req.model == ["deeplab_small_resnet", "deeplab_small_resnet_ibn_a"]
    assert req.options == {"fractions": [0.1, 1.0], "seeds": [0, 1]}
    with pytest.raises(DgbenchError, match="re-running needs"):
        get("finetune").rerun_request("cityscapes", lb.assign(train_domain="gta5", test_domain="cityscapes"))


def test_cli_flags_reach_the_protocol_and_others_refuse_them(tiny: Path) -> None:
    def invoke(*args: str) -> str:
        res = runner.invoke(app, ["run", *args, "--results", str(tiny), "--no-progress"])
        assert res.exit_code != 0
        return str(res.exception) if isinstance(res.exception, DgbenchError) else res.output

    msg = invoke("--protocol", "finetune", "--dataset", "digit-scenes", "--fractions", "0.1,1.5")
    assert "--fractions '1.5'" in msg and "(0, 1]" in msg
    assert "--seeds" in invoke("--protocol", "finetune", "--dataset", "digit-scenes", "--seeds", "a")
    assert "--fractions: not used by the cross-domain protocol" in invoke(
        "--protocol", "cross-domain", "--dataset", "digit-scenes", "--fractions", "0.1")


@pytest.mark.parametrize("line, why", [('iterations = "some"', "iterations"), ("crop_size = [64]", "two positive"),
                                       ("lr = 0.1", "unknown recipe key"), ("mirror = 1", "wrong type")])
def test_bad_recipe_in_toml_names_the_field(tmp_path: Path, line: str, why: str) -> None:
    from dgbench.errors import SpecError
    from dgbench.config import data_dir
    from dgbench.protocols.specs import load_specs

    (tmp_path / "bad.toml").write_text(TINY.replace("batch_size = 8\niterations = 2", line))
    with pytest.raises(SpecError, match=f"finetune-tiny.recipes.digit-scenes.*{why}"):
        load_specs([data_dir("transforms"), tmp_path])


def test_gta5_checkpoint_finetuned_on_a_cityscapes_tree(tiny: Path, tmp_path: Path) -> None:
    """The Table 8 path: --checkpoint-b (a 19-class "GTA5" model) fine-tuned on half a Cityscapes tree."""
    from dgbench.models import create_model
    from seg_fixtures import make_cityscapes

    cs = make_cityscapes(tmp_path / "cs", "train", per_city=4)
    make_cityscapes(cs, "val", per_city=1)
    ckpt = tmp_path / "gta5.pth"
    torch.manual_seed(0)
    torch.save(create_model("deeplab_resnet50_ibn_a", num_classes=19).state_dict(), ckpt)
    req = RunRequest(model="ibn_a", dataset="cityscapes-gta5", results=tiny, device="cpu", progress=False, workers=0,
                     options={"checkpoint_b": str(ckpt), "roots": {"cityscapes": str(cs)}, "fractions": "0.5"})
    src, half = run("finetune-tiny", req).records
    assert (src["train_domain"], src["test_domain"], src["dataset"]) == ("gta5", "cityscapes", "cityscapes")
    assert src["model"] == "deeplab_resnet50_ibn_a" and src["weights_source"] == str(ckpt)
    assert half["subset"]["images"] == 4 and half["subset"]["of"] == 8 and half["finetune"]["iterations"] == 1
    assert half["preprocessing"]["recipe"]["crop_size"] == [32, 32] and half["num_samples"] == 2

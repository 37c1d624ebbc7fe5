"""The appearance protocol end to end on tiny trees: IBN-b's exact 0.00 std-x1.5 drop, the CLI,
dataset selection and the offline fallback for Monet."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from appearance_fixtures import env_isolated, folder_tree, small, write_jpeg
from dgbench.cli import app
from dgbench.data.base import Preprocess
from dgbench.data.imagenet import ImageNetVal, synsets
from dgbench.engine import EngineConfig, evaluate
from dgbench.errors import DatasetNotFoundError
from dgbench.protocols import get_protocol, get_shift
from dgbench.protocols.appearance import choose_dataset, get_shift_or_fallback, run_protocol, select


def _median_head_and_tree(model: torch.nn.Module, tmp_path: Path, n: int = 12) -> Path:
    """Give ``model`` a 2-class head whose decision threshold sits at the median of its clean logit
    difference over ``n`` images (a random network otherwise predicts one class for everything),
    and write a tree labelled with its own clean predictions: origin error is 0 by construction, and
    every prediction a shift changes shows up as a positive drop. The same recipe for every model."""
    from dgbench.shifts import normalize

    staging = tmp_path / "staging"
    for i in range(1, n + 1):
        write_jpeg(staging / synsets()[0] / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i)
    ds = ImageNetVal(staging, Preprocess.from_cfg(model.pretrained_cfg))
    x = normalize(torch.stack([ds[i][0] for i in range(len(ds))]), model.pretrained_cfg.mean, model.pretrained_cfg.std)
    with torch.no_grad():
        logits = model(x)
        diff = (logits[:, 1] - logits[:, 0]).sort().values
        model.fc.bias.data[1] -= (diff[n // 2 - 1] + diff[n // 2]) / 2
        pred = model(x).argmax(1).tolist()
    root = tmp_path / "val"
    for (path, _), c in zip(ds.samples, pred):
        (root / synsets()[c]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / synsets()[c] / path.name)
    return root


def test_ibn_b_std_x15_drop_is_exactly_zero_and_the_plain_resnet_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    drops = {}
    for name in ("resnet18", "resnet18_ibn_b"):
        model = small(name, size=32, num_classes=2, seed=5)
        root = _median_head_and_tree(model, tmp_path / name)
        summary = run_protocol(model, "appearance-lite", shifts=["std-x1.5"], data=root, workers=0,
                               progress=False, pretrained=False, store=False, batch_size=5)
        by = {r["shift"]: r for r in summary.records}
        assert by["origin"]["metrics"]["top1_err"] == 0.0
        drops[name] = by["std-x1.5"]["drop"]
    assert drops["resnet18_ibn_b"] == {"top1_err": 0.0, "top5_err": 0.0}
    assert drops["resnet18"]["top1_err"] > 0


def test_ibn_b_invariance_needs_the_unclipped_definition(tmp_path: Path) -> None:
    """Clipping breaks the exact invariance: logits under std-x1.5 equal the clean ones only unclipped."""
    from dgbench.shifts import ShiftSpec

    model = small("resnet18_ibn_b", size=32, seed=5)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 3])
    ds = ImageNetVal(root, Preprocess.from_cfg(model.pretrained_cfg))
    u = torch.stack([ds[i][0] for i in range(4)]).float()
    from dgbench.shifts import AffineBatchShift

    fns = {n: AffineBatchShift(s, model.pretrained_cfg.mean, model.pretrained_cfg.std, torch.device("cpu"))
           for n, s in {"origin": get_shift("origin"), "std": get_shift("std-x1.5"),
                        "std-clip": ShiftSpec("c", "scale_std", {"factor": 1.5}, clip=True)}.items()}
    with torch.no_grad():
        out = {n: model(f(u)) for n, f in fns.items()}
    # equal up to IN's epsilon (var + eps under a scaled input) and float rounding ...
    unclipped = (out["std"] - out["origin"]).abs().max()
    assert unclipped < 1e-3
    # ... while clipping leaves a residue orders of magnitude larger
    assert (out["std-clip"] - out["origin"]).abs().max() > 50 * unclipped


def test_cli_run_end_to_end_json_then_table_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 3, 0])
    runner = CliRunner()
    args = ["run", "--model", "resnet18_ibn_b", "--protocol", "appearance-lite", "--data", str(root), "--no-pretrained",
            "--workers", "0", "--batch-size", "2", "--limit", "4", "--results", str(tmp_path / "res")]
    res = runner.invoke(app, args + ["--format", "json"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["shift"] for r in recs] == ["origin", "rgb+50", "r+50", "std-x1.5"]
    for r in recs:
        assert r["model"] == "resnet18_ibn_b" and r["dataset"] == "imagenet" and r["limit"] == 4
        assert r["num_samples"] == 4 and r["precision"] == "fp32" and r["shift_spec"]["formula"]
        assert set(r["metrics"]) == {"top1_err", "top5_err"}
        assert r["preprocessing"]["resize_size"] == 256 and r["preprocessing"]["crop_size"] == 224
    assert recs[3]["shift_spec"]["params"] == {"factor": 1.5} and recs[3]["reference"] == "origin"
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 result(s) computed, 4 reused" in again.output and "std-x1.5" in again.output


def test_cli_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    from dgbench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="appearance"):
        get_protocol("apperance")
    with pytest.raises(UnknownNameError, match="std-x1.5"):
        run_protocol("resnet18", "appearance", shifts=["std-x1.6"], data=tmp_path, pretrained=False)
    with pytest.raises(DatasetNotFoundError, match="expected ImageNet"):
        run_protocol("resnet18", "appearance-lite", data=tmp_path / "nothing", pretrained=False)


def test_dataset_selection_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    assert choose_dataset("digits", None)[:2] == ("digits", None)
    assert choose_dataset(None, tmp_path)[:2] == ("imagenet", str(tmp_path))
    monkeypatch.setenv("DGBENCH_IMAGENET", str(tmp_path))
    assert choose_dataset(None, None)[:2] == ("imagenet", None)
    monkeypatch.delenv("DGBENCH_IMAGENET")
    name, _, note = choose_dataset(None, None)
    assert name == "digits" and "DGBENCH_IMAGENET" in note


def test_monet_falls_back_to_the_offline_style_on_datasets_without_renderings() -> None:
    class Offline:
        name, offline_styles_only = "somewhere", True

    class Online:
        name = "imagenet"

    fb = get_protocol("appearance").fallbacks
    assert get_shift_or_fallback(get_shift("monet"), fb, Offline()).name == "cv-stylize"
    assert get_shift_or_fallback(get_shift("monet"), fb, Online()).name == "monet"
    assert get_shift_or_fallback(get_shift("r+50"), fb, Offline()).name == "r+50"


def test_generic_selection_on_any_dataset() -> None:
    class Toy(torch.utils.data.Dataset):
        name, num_classes = "toy", 3
        labels = [0, 0, 0, 1, 2, 2, 1, 0]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return torch.full((3, 4, 4), i, dtype=torch.uint8), self.labels[i]

        def fingerprint(self):
            return "t"

        def describe(self):
            return {"name": "toy"}

    sel = select(Toy(), subset=5)
    assert [sel[i][1] for i in range(len(sel))] == [0, 0, 1, 2, 2] or sorted(sel[i][1] for i in range(5)) == [0, 0, 1, 1, 2]
    assert sorted(sel.indices) == sel.indices and len(sel) == 5
    assert len(select(Toy(), limit=3)) == 3 and select(Toy()) .__class__.__name__ == "Toy"
    res = evaluate(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3)), sel, [get_shift("origin")],
                   config=EngineConfig(device="cpu", workers=0, progress=False, channels_last=False))
    assert res.num_samples == 5


def test_zoo_aliases_mean_the_small_models_on_the_builtin_digits() -> None:
    from dgbench.models.small import small_name_for
    from dgbench.protocols.model_select import resolve_models

    assert small_name_for("ibn_b") == "small_resnet_ibn_b"
    assert resolve_models("small_resnet_ibn_b") == ["small_resnet_ibn_b"]  # a registered model
    assert resolve_models("ibn_b") == ["resnet50_ibn_b"]  # on ImageNet the alias keeps its meaning
    assert resolve_models("ibn_a,ibn_b") == ["resnet50_ibn_a", "resnet50_ibn_b"]

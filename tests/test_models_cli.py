"""`dgbench models`, hubconf.py and the stats behind the table."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.models.stats import model_stats

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGBENCH_CACHE", str(tmp_path / "cache"))


def test_models_csv_lists_sizes_and_weights() -> None:
    res = CliRunner().invoke(app, ["models", "resnet18*", "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(res.output))}
    assert set(rows) == {"resnet18", "resnet18_ibn_a", "resnet18_ibn_b", "resnet18_ibn_c", "resnet18_ibn_d",
                         "resnet18_ibn_ad", "resnet18_ibn_a2"}
    assert rows["resnet18"]["params_m"] == "11.69"  # torchvision's ResNet-18: 11,689,512 parameters
    assert rows["resnet18"]["gflops"] == "1.81"  # 1.81 G multiply-adds at 224 (torchvision's table)
    assert rows["resnet18_ibn_a"]["weights"] == "yes" and rows["resnet18_ibn_c"]["weights"] == "no"
    assert float(rows["resnet18_ibn_c"]["params_m"]) > 11.69  # c adds channels
    assert rows["resnet18_ibn_b"]["variant"] == "ibn_b" and rows["resnet18_ibn_b"]["backbone"] == "resnet18"


def test_models_json() -> None:
    res = CliRunner().invoke(app, ["models", "resnet50_ibn_a2", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    by_name = {d["name"]: d for d in data}
    assert by_name["resnet50_ibn_a2"]["aliases"] == ["ibn_a2"]
    assert by_name["resnet50_ibn_a2"]["gflops"] == pytest.approx(4.09, abs=0.01)


def test_models_table_and_unknown_pattern() -> None:
    res = CliRunner().invoke(app, ["models", "densenet121"])
    assert res.exit_code == 0 and "densenet121_ibn_a" in res.output
    bad = CliRunner().invoke(app, ["models", "resnet5O"])
    assert bad.exit_code != 0


def test_stats_are_cached_per_model_code(tmp_path: Path) -> None:
    first = model_stats("resnet34_ibn_b")
    assert list((tmp_path / "cache").glob("model_stats-*.json"))
    assert model_stats("resnet34_ibn_b", use_cache=False) == first


def test_hubconf_exposes_every_authors_constructor() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dgbench_hubconf", REPO / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(hub)  # type: ignore[union-attr]
    for n in ["resnet18_ibn_a", "resnet101_ibn_b", "resnext101_ibn_a", "se_resnet101_ibn_a", "densenet169_ibn_a",
              "resnet50", "ibn_b"]:
        assert callable(getattr(hub, n)), n
    model = torch.hub.load(str(REPO), "resnet18_ibn_b", source="local", num_classes=3)
    assert model.dgbench_name == "resnet18_ibn_b" and model.fc.out_features == 3

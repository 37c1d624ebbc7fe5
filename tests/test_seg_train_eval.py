"""Train -> evaluate -> table on the fixture trees, resumes, saved predictions and `dgbench score`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import CheckpointError
from dgbench.models import create_model
from dgbench.engine.segmentation import evaluate_segmentation, predict_logits
from dgbench.protocols.segmentation import run_cross_domain_segmentation, score_predictions
from dgbench.data.cityscapes import CityscapesSegmentation
from dgbench.data.gta5 import GTA5Segmentation
from dgbench.results.store import ResultStore
from dgbench.results.tables import render_table
from dgbench.train.segmentation import train_segmentation
from seg_fixtures import make_cityscapes, make_gta5

TINY = {"widths": (8, 16, 32, 64)}
FAST = dict(
    model="ibn_a", model_kwargs=TINY, epochs=2, batch_size=2, crop_size=(32, 32), pretrained_backbone=False,
    num_workers=0, progress=False,
)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("seg")
    cs = make_cityscapes(base / "cityscapes", split="train", seed=1)
    make_cityscapes(cs, split="val", cities=("frankfurt",), per_city=2, seed=2)
    gta = make_gta5(base / "gta5", n=8, seed=3)
    return {"cityscapes": cs, "gta5": gta, "base": base}


@pytest.fixture(scope="module")
def trained(trees: dict[str, Path]) -> dict[str, Path]:
    """One short run per domain (4 and 2 iterations), shared by the tests below."""
    runs = {}
    cs = train_segmentation("cityscapes", root=trees["cityscapes"], out_dir=trees["base"] / "run-cs", **FAST)
    gta = train_segmentation(
        "gta5", root=trees["gta5"], out_dir=trees["base"] / "run-gta", gta5_size=(48, 24), gta5_fraction=1.0,
        **{**FAST, "epochs": 1},
    )
    for name, r in (("cityscapes", cs), ("gta5", gta)):
        assert r.iteration == r.total_iterations and r.weights is not None and r.weights.is_file()
        assert r.losses and all(math.isfinite(v) for v in r.losses)
        runs[name] = r.weights
    assert cs.total_iterations == 4  # 2 epochs x (4 images // batch 2)
    assert json.loads((cs.out_dir / "model.json").read_text())["model"] == "deeplab_resnet50_ibn_a"
    return runs


def test_resumed_run_continues_from_its_checkpoint(trees: dict[str, Path], trained: dict[str, Path]) -> None:
    out = trees["base"] / "run-resume"
    first = train_segmentation("cityscapes", root=trees["cityscapes"], out_dir=out, stop_after=3, **FAST)
    assert first.iteration == 3 and first.weights is None  # stopped mid-epoch, schedule unchanged
    ck = torch.load(first.checkpoint, map_location="cpu", weights_only=True)
    assert ck["iteration"] == 3 and ck["total_iterations"] == 4 and "optimizer" in ck and "rng" in ck
    second = train_segmentation("cityscapes", root=trees["cityscapes"], out_dir=out, **FAST)
    assert second.resumed_from == 3 and second.iteration == 4 and len(second.losses) == 1
    # Interrupted + resumed == uninterrupted: same weights as the straight 4-iteration run.
    a = torch.load(trained["cityscapes"], map_location="cpu", weights_only=True)
    b = torch.load(second.weights, map_location="cpu", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_resume_with_another_number_of_classes_fails(trees: dict[str, Path], trained: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match="trained for 19 classes, this run has 11"):
        train_segmentation("cityscapes", root=trees["cityscapes"], out_dir=trees["base"] / "run-cs", num_classes=11, **FAST)


def test_train_evaluate_table_and_score(trees: dict[str, Path], trained: dict[str, Path], tmp_path: Path) -> None:
    test_sets = {
        "cityscapes": CityscapesSegmentation(trees["cityscapes"], "val"),
        "gta5": GTA5Segmentation(trees["gta5"], "val"),
    }
    preds = tmp_path / "preds"
    records = run_cross_domain_segmentation(
        "deeplab_resnet50_ibn_a", trained, test_sets, model_kwargs=TINY, save_predictions=preds,
    )
    assert len(records) == 4
    by = {(r["train_domain"], r["test_domain"]): r for r in records}
    cross = by[("cityscapes", "gta5")]
    assert cross["reference"] == "cityscapes" and cross["protocol"] == "cross-domain"
    assert cross["task"] == "segmentation" and cross["dataset"] == "gta5"  # the cell's test set
    assert cross["drop"]["miou"] == pytest.approx(cross["metrics"]["miou"] - by[("cityscapes", "cityscapes")]["metrics"]["miou"])
    assert 0 <= cross["metrics"]["pixel_acc"] <= 100 and len(cross["per_class_iou"]) == 19
    assert set(cross["drop"]) == set(cross["metrics"]) == {"miou", "pixel_acc"}  # scalar metrics, a drop for each

    store = ResultStore(tmp_path / "results")
    store.append(records)
    text = render_table(store.records(), kind="cross-domain", fmt="markdown")
    assert "cityscapes-gta5" in text and "deeplab_resnet50_ibn_a" in text

    # The saved labelId PNGs score exactly as the evaluation did, through `dgbench score`.
    in_domain = {**by[("cityscapes", "cityscapes")]["metrics"], "per_class_iou": by[("cityscapes", "cityscapes")]["per_class_iou"]}
    res = CliRunner().invoke(app, ["score", "--pred", str(preds / "cityscapes-to-cityscapes"),
                                   "--gt", str(trees["cityscapes"]), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["miou"] == pytest.approx(in_domain["miou"], abs=1e-4)
    assert out["pixel_acc"] == pytest.approx(in_domain["pixel_acc"], abs=1e-4)
    assert set(out["per_class_iou"]) == set(in_domain["per_class_iou"])
    # trainId output and a gtFine/<split> folder give the same numbers.
    m = score_predictions(preds / "cityscapes-to-cityscapes" / "trainIds", trees["cityscapes"] / "gtFine" / "val")
    assert 100 * m.miou == pytest.approx(in_domain["miou"], abs=1e-4)
    assert (preds / "cityscapes-to-cityscapes" / "color" / "frankfurt_000000_000019_color.png").is_file()
    res = CliRunner().invoke(app, ["score", "--pred", str(preds / "cityscapes-to-cityscapes"), "--gt", str(trees["cityscapes"])])
    assert res.exit_code == 0 and "mIoU" in res.output


def test_score_reports_missing_predictions(trees: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    from dgbench.data.seg_base import SegmentationDataError

    with pytest.raises(SegmentationDataError, match="frankfurt_000000_000019"):
        score_predictions(tmp_path / "empty", trees["cityscapes"])


class _Pointwise(torch.nn.Module):
    """A 1x1 convolution: its output at a pixel depends on that pixel only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_sliding_window_and_flip_average_logits() -> None:
    torch.manual_seed(0)
    net = _Pointwise().eval()
    x = torch.randn(1, 3, 37, 53)
    whole = predict_logits(net, x, (37, 53), num_classes=5)
    # Overlapping windows (and padding at the borders) average to the same per-pixel logits.
    slide = predict_logits(net, x, (37, 53), num_classes=5, mode="slide", crop_size=(16, 24), stride=(10, 13))
    assert torch.allclose(whole, slide, atol=1e-6)
    big = predict_logits(net, x, (37, 53), num_classes=5, mode="slide", crop_size=(64, 64), stride=(32, 32))
    assert torch.allclose(whole, big, atol=1e-6)
    flipped = predict_logits(net, x, (37, 53), num_classes=5, flip=True)
    assert torch.allclose(whole, flipped, atol=1e-6)
    # Logits are brought to the label size.
    assert predict_logits(net, x, (74, 106), num_classes=5, scale=0.5).shape == (1, 5, 74, 106)


def test_evaluate_limit_and_device_matrix(trees: dict[str, Path], trained: dict[str, Path]) -> None:
    net = create_model("deeplab_resnet50_ibn_a", pretrained=str(trained["cityscapes"]), **TINY)
    ds = CityscapesSegmentation(trees["cityscapes"], "val")
    m, cm = evaluate_segmentation(net, ds, limit=1)
    assert cm.table().dtype == torch.int64 and int(cm.table().sum()) == m.num_pixels
    lbl = ds[0][1].numpy()
    assert m.num_pixels == int(np.sum(lbl != 255))

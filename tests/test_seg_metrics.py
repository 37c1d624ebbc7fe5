"""Segmentation metrics equal the official Cityscapes evaluation (cityscapesscripts) to 1e-6."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgbench.data.seg_base import CLASS_NAMES, LABEL_TO_TRAIN
from dgbench.metrics.segmentation import ConfusionMatrix, segmentation_metrics
from dgbench.protocols.segmentation import score_predictions
from seg_fixtures import blocky_label

# A declared dependency: if it cannot be imported the comparison with the official tool must fail,
# not skip (a skip would leave the metric unchecked while the suite stays green).
import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev  # noqa: E402

# GT never uses labelIds 31 (train) or 32 (motorcycle); predictions never use 31 or 33 (bicycle):
# "train" is absent from both (NaN, left out of the mean), motorcycle is predicted only (IoU 0),
# bicycle is in the ground truth only (IoU 0). Void labelIds (0..6, 9, 10, ...) appear on both sides.
GT_IDS = np.array([i for i in range(34) if i not in (31, 32)], dtype=np.uint8)
PRED_IDS = np.array([i for i in range(34) if i not in (31, 33)], dtype=np.uint8)


def _write_pair_tree(root: Path, n_per_city: int = 2, size: tuple[int, int] = (64, 32), seed: int = 1) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    w, h = size
    gts, preds = [], []
    for city in ("aachen", "zurich"):
        gdir = root / "gtFine" / "val" / city
        pdir = root / "results"
        gdir.mkdir(parents=True, exist_ok=True)
        pdir.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_city):
            stem = f"{city}_{i:06d}_{i + 19:06d}"
            gt = blocky_label(rng, h, w, GT_IDS, block=4)
            # A prediction that is right on most blocks, so IoUs are spread over (0, 1).
            wrong = blocky_label(rng, h, w, PRED_IDS, block=4)
            keep = np.kron(rng.random((h // 4, w // 4)) < 0.6, np.ones((4, 4), dtype=bool))
            pred = np.where(keep & np.isin(gt, PRED_IDS), gt, wrong).astype(np.uint8)
            gpath = gdir / f"{stem}_gtFine_labelIds.png"
            ppath = pdir / f"{stem}_pred.png"
            Image.fromarray(gt).save(gpath)
            Image.fromarray(pred).save(ppath)
            gts.append(str(gpath))
            preds.append(str(ppath))
    return preds, gts


def _official(preds: list[str], gts: list[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    # No instance files, no JSON export, no console output; everything else as the tool runs.
    monkeypatch.setattr(ev.args, "evalInstLevelScore", False)
    monkeypatch.setattr(ev.args, "JSONOutput", False)
    monkeypatch.setattr(ev.args, "quiet", True)
    return ev.evaluateImgLists(preds, gts, ev.args)


def test_metrics_equal_cityscapesscripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preds, gts = _write_pair_tree(tmp_path)
    official = _official(preds, gts, monkeypatch)
    ours = score_predictions(tmp_path / "results", tmp_path, split="val", kind="labelIds")

    ious = ours.iou_by_name()
    assert list(ious) == CLASS_NAMES
    for name in CLASS_NAMES:
        ref = official["classScores"][name]
        if math.isnan(ref):
            assert math.isnan(ious[name]), name
        else:
            assert ious[name] == pytest.approx(ref, abs=1e-6), name
    assert math.isnan(ious["train"])  # absent from both sides
    assert ious["motorcycle"] == 0.0 and ious["bicycle"] == 0.0
    assert ours.num_valid_classes == 18
    assert ours.miou == pytest.approx(official["averageScoreClasses"], abs=1e-6)

    # Pixel accuracy from the official confusion matrix (labelId space): correct / evaluated pixels.
    conf = np.array(official["confMatrix"], dtype=np.int64)
    eval_ids = [i for i in range(34) if LABEL_TO_TRAIN[i] != 255]
    acc = conf[eval_ids, eval_ids].sum() / conf[eval_ids].sum()
    assert ours.pixel_acc == pytest.approx(acc, abs=1e-6)
    assert ours.num_pixels == conf[eval_ids].sum()


def test_trainid_predictions_score_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preds, gts = _write_pair_tree(tmp_path, seed=3)
    official = _official(preds, gts, monkeypatch)
    tdir = tmp_path / "train_preds"
    tdir.mkdir()
    for p in preds:
        name = Path(p).name.replace("_pred.png", "_trainIds.png")
        Image.fromarray(LABEL_TO_TRAIN[np.array(Image.open(p))]).save(tdir / name)
    ours = score_predictions(tdir, tmp_path / "gtFine" / "val")  # auto-detects trainIds
    assert ours.miou == pytest.approx(official["averageScoreClasses"], abs=1e-6)


def test_confusion_accumulates_over_the_set_not_per_image() -> None:
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 20, size=(8, 8)) for _ in range(3)]
    gts = [np.where(g == 19, 255, g) for g in gts]
    preds = [rng.integers(0, 19, size=(8, 8)) for _ in range(3)]
    cm = ConfusionMatrix(19)
    for p, g in zip(preds, gts):
        cm.update(torch.from_numpy(p), torch.from_numpy(g))
    whole = ConfusionMatrix(19)
    whole.update(np.stack(preds), np.stack(gts))
    assert torch.equal(cm.table(), whole.table())
    assert cm.table().dtype == torch.int64
    g, p = np.concatenate([x.ravel() for x in gts]), np.concatenate([x.ravel() for x in preds])
    keep = g != 255
    ref = np.bincount(g[keep] * 19 + p[keep], minlength=361).reshape(19, 19)
    assert np.array_equal(cm.matrix.numpy(), ref)
    # mIoU of the set differs in general from the mean of per-image mIoUs: it must be the former.
    m = cm.compute()
    tp = np.diag(ref)
    iou = tp / (ref.sum(0) + ref.sum(1) - tp)
    assert m.miou == pytest.approx(np.nanmean(iou), abs=1e-12)


def test_void_predictions_are_false_negatives() -> None:
    cm = ConfusionMatrix(3)
    gt = torch.tensor([0, 0, 1, 1, 255])
    pred = torch.tensor([0, 255, 1, 0, 2])  # a void prediction on a class-0 pixel
    cm.update(pred, gt)
    m = cm.compute(["a", "b", "c"])
    assert m.per_class_iou[0] == pytest.approx(1 / 3)  # tp 1, fn 1 (void), fp 1
    assert m.per_class_iou[1] == pytest.approx(1 / 2)
    assert math.isnan(m.per_class_iou[2])  # never in GT or prediction on valid pixels
    assert m.pixel_acc == pytest.approx(2 / 4)
    rec = m.as_record_metrics()
    assert rec["per_class_iou"]["c"] is None and rec["miou"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)
    assert segmentation_metrics(cm.matrix).pixel_acc == pytest.approx(2 / 3)  # C x C alone: no void column

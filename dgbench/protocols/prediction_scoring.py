"""Scoring a folder of segmentation predictions against Cityscapes ground truth (``dgbench score``).

Predictions are matched to ground truth by ``{city}_{seq}_{frame}`` and scored like the official
Cityscapes tool (labelIds or trainIds PNGs; a void labelId is a false negative).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..data.seg_base import CLASS_NAMES, IGNORE_INDEX, LABEL_TO_TRAIN, SegmentationDataError, read_label, to_train_ids
from ..errors import DatasetNotFoundError
from ..metrics.segmentation import ConfusionMatrix, SegMetrics

_CS_KEY = re.compile(r"^([A-Za-z-]+_\d+_\d+)")
_GT_SUFFIX = "_gtFine_labelIds.png"


def _cs_key(filename: str) -> str | None:
    """``{city}_{seq}_{frame}`` from a Cityscapes-style file name (as the official tool matches)."""
    m = _CS_KEY.match(filename)
    return m.group(1) if m else None


def find_gt_files(gt: Path, split: str = "val") -> dict[str, Path]:
    """Ground-truth labelId files under the Cityscapes root (``gtFine/{split}``) or any folder."""
    if not gt.exists():
        raise DatasetNotFoundError(f"ground-truth folder {gt} does not exist")
    base = gt / "gtFine" / split if (gt / "gtFine").is_dir() else gt
    if not base.is_dir():
        raise DatasetNotFoundError(f"expected {base} (the Cityscapes root's gtFine/{split}) or a gtFine/<split> folder")
    files = {}
    for p in sorted(base.rglob(f"*{_GT_SUFFIX}")):
        files[p.name[: -len(_GT_SUFFIX)]] = p
    if not files:
        raise DatasetNotFoundError(f"no *{_GT_SUFFIX} files under {base}")
    return files


def find_prediction_files(pred: Path, kind: str = "auto") -> tuple[dict[str, Path], str]:
    """Prediction PNGs keyed by ``{city}_{seq}_{frame}``, and their kind (labelIds | trainIds).

    ``auto``: dgbench's own output folder (``labelIds/`` sub-folder) -> its labelIds; files named
    ``*_trainIds.png`` -> trainIds; anything else -> labelIds, as the official tool reads.
    """
    if not pred.is_dir():
        raise DatasetNotFoundError(f"prediction folder {pred} does not exist")
    if kind == "auto":
        if (pred / "labelIds").is_dir():
            pred, kind = pred / "labelIds", "labelIds"
        else:
            pngs = list(pred.rglob("*.png"))
            kind = "trainIds" if pngs and all(p.name.endswith("_trainIds.png") for p in pngs) else "labelIds"
    if kind not in ("labelIds", "trainIds"):
        raise ValueError(f"prediction kind must be auto, labelIds or trainIds, got {kind!r}")
    found: dict[str, Path] = {}
    for p in sorted(pred.rglob("*.png")):
        key = _cs_key(p.name)
        if key is None:
            continue
        if key in found:
            raise SegmentationDataError(f"several predictions for {key}: {found[key]} and {p}")
        found[key] = p
    return found, kind


def score_predictions(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    split: str = "val",
    kind: str = "auto",
    device: str | torch.device = "cpu",
) -> SegMetrics:
    """Score a folder of predictions against Cityscapes ground truth, like the official tool.

    Every ground-truth image needs exactly one prediction of the same size (extra predictions are
    ignored, as by the official tool). Ground-truth values outside the label table are errors.
    """
    gts = find_gt_files(Path(gt_dir), split)
    preds, kind = find_prediction_files(Path(pred_dir), kind)
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise SegmentationDataError(
            f"{len(missing)} ground-truth image(s) have no prediction in {pred_dir}: "
            + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        )
    cm = ConfusionMatrix(len(CLASS_NAMES), IGNORE_INDEX, device=device)
    for key, gpath in gts.items():
        gt = to_train_ids(read_label(gpath), gpath)
        ppath = preds[key]
        p = read_label(ppath)
        if p.shape != gt.shape:
            raise SegmentationDataError(
                f"prediction {ppath} is {p.shape[1]}x{p.shape[0]} but ground truth {gpath} is {gt.shape[1]}x{gt.shape[0]}"
            )
        # labelIds -> trainIds; a void labelId becomes 255, a false negative (official behaviour).
        p_train = LABEL_TO_TRAIN[p] if kind == "labelIds" else p
        cm.update(torch.from_numpy(p_train), torch.from_numpy(gt))
    return cm.compute(CLASS_NAMES)

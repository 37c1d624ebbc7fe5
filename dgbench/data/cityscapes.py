"""Cityscapes (fine annotations) in its official layout.

    <root>/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    <root>/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

The root comes from the ``--cityscapes-root`` flag or ``$DGBENCH_CITYSCAPES``. Labels are labelIds,
mapped to the 19 trainIds through the official table (:mod:`.seg_base`). Images are used at full
resolution (2048x1024), as in the paper.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config import ENV_VARS, data_root
from ..errors import DatasetNotFoundError
from .seg_base import LayoutReport, Pair, layout_report, QuirkPolicy, SegmentationDataError, SegmentationDataset, Transform, match_counts

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val", "test")


def resolve_root(root: str | os.PathLike | None) -> Path:
    r = data_root("cityscapes", root)
    if r is None:
        raise DatasetNotFoundError(
            "Cityscapes root not set: pass --cityscapes-root DIR or set "
            f"{ENV_VARS['cityscapes']}=DIR, where DIR holds leftImg8bit/{{split}}/{{city}}/*{IMAGE_SUFFIX} "
            f"and gtFine/{{split}}/{{city}}/*{LABEL_SUFFIX}"
        )
    return r


def find_pairs(root: Path, split: str) -> list[Pair]:
    """The (image, label) pairs of ``split``, checked for a one-to-one match."""
    img_dir, lbl_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    missing = [d for d in (img_dir, lbl_dir) if not d.is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"Cityscapes tree not found: missing {', '.join(str(m) for m in missing)}. Expected "
            f"{root}/leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX} and {root}/gtFine/{split}/<city>/*{LABEL_SUFFIX} "
            f"(root from --cityscapes-root or {ENV_VARS['cityscapes']})"
        )
    images = {p.name[: -len(IMAGE_SUFFIX)]: p for p in img_dir.glob(f"*/*{IMAGE_SUFFIX}")}
    labels = {p.name[: -len(LABEL_SUFFIX)]: p for p in lbl_dir.glob(f"*/*{LABEL_SUFFIX}")}
    if not images:
        raise DatasetNotFoundError(f"Cityscapes: no {img_dir}/<city>/*{IMAGE_SUFFIX} files")
    match_counts(images, labels, "Cityscapes", f"{img_dir} and {lbl_dir}")
    return [Pair(images[k], labels[k], k) for k in sorted(images)]


class CityscapesSegmentation(SegmentationDataset):
    """Cityscapes ``split`` as ``(uint8 image, int64 trainIds, name)`` samples."""

    name = "cityscapes"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "val",
        *,
        transform: Transform | None = None,
        policy: QuirkPolicy | None = None,
        base_size: tuple[int, int] | None = None,
    ):
        if split not in SPLITS:
            raise SegmentationDataError(f"Cityscapes split must be one of {SPLITS}, got {split!r}")
        r = resolve_root(root)
        super().__init__(find_pairs(r, split), root=r, split=split, policy=policy, transform=transform, base_size=base_size)


def check_layout(root: str | os.PathLike | None = None, splits: tuple[str, ...] = ("train", "val")) -> LayoutReport:
    """``dgbench doctor``'s Cityscapes check: layout, counts, header sizes; never raises.

    Reads file headers only (no pixel decoding), so it is quick even on the full dataset.
    """
    return layout_report("cityscapes", lambda: resolve_root(root), find_pairs, splits)

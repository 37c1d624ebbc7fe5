"""Semantic-segmentation metrics from one confusion matrix accumulated over a whole set.

The definitions follow the official Cityscapes evaluation
(``cityscapesscripts/evaluation/evalPixelLevelSemanticLabeling.py``), so dgbench's numbers equal
the official tool's on the same predictions (the tests check this to 1e-6):

* pixels whose ground truth is ``ignore_index`` (255: every Cityscapes label outside the 19 train
  classes) are left out entirely;
* ``matrix[g, p]`` counts pixels of ground-truth class ``g`` predicted as class ``p``;
* a valid ground-truth pixel predicted as something that is *not* one of the classes (a void
  labelId such as "unlabeled", i.e. trainId 255, or any other out-of-range value) is a false
  negative of its class and an error for pixel accuracy, as in the official script. Those pixels
  are counted per ground-truth class in :attr:`ConfusionMatrix.void_pred` (the official matrix
  keeps them in the columns of the ignored labels);
* IoU_c = TP / (TP + FP + FN); a class with TP + FP + FN = 0 (absent from both the ground truth
  and the predictions of the whole set) has IoU NaN, and the mean IoU averages the classes whose
  IoU is not NaN (the official ``getScoreAverage``);
* pixel accuracy = correctly predicted valid pixels / valid pixels (NaN for an empty set). The
  official script's own pixel-accuracy option is off by default and not used as a reference.

Everything is integer (int64) until the final division, and accumulation runs on whatever device
the tensors live on (``torch.bincount``), so GPU evaluation needs no host round trip per image.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .outcomes import SegImageCounts

IGNORE_INDEX = 255


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


class ConfusionMatrix:
    """A ``num_classes x num_classes`` int64 confusion matrix plus per-class void predictions.

    Internally one ``[C, C + 1]`` count table: the extra column collects valid ground-truth pixels
    whose prediction is not a class (see the module docstring); :attr:`matrix` is the ``C x C`` part.
    """

    def __init__(
        self,
        num_classes: int = 19,
        ignore_index: int = IGNORE_INDEX,
        device: torch.device | str | None = None,
        images: int | None = None,
    ):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._table = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)
        # With ``images``: each image's per-class (tp, gt, pred) counts too, [images, 3, C], on
        # the device until read (see :meth:`per_image`); ``update(..., image=i)`` fills row i.
        self._images = None if images is None else torch.zeros(images, 3, num_classes, dtype=torch.int64, device=device)

    @property
    def matrix(self) -> torch.Tensor:
        """``[C, C]`` counts: rows ground truth, columns prediction."""
        return self._table[:, : self.num_classes]

    @property
    def void_pred(self) -> torch.Tensor:
        """``[C]`` valid ground-truth pixels per class predicted as no class (false negatives)."""
        return self._table[:, self.num_classes]

    def reset(self) -> None:
        self._table.zero_()
        if self._images is not None:
            self._images.zero_()

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, image: int | None = None) -> None:
        """Add a prediction / ground truth pair (trainIds, any matching shape, any integer dtype);
        ``image``: its index, to keep its own counts (a matrix made with ``images``)."""
        pred, target = _as_tensor(pred), _as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != ground truth shape {tuple(target.shape)}")
        dev = self._table.device
        pred = pred.to(dev).reshape(-1).long()
        target = target.to(dev).reshape(-1).long()
        c = self.num_classes
        # Ground truth outside [0, C) (255 included) is not evaluated; an ignore_index inside the
        # class range (unusual) is dropped explicitly.
        keep = (target >= 0) & (target < c)
        if self.ignore_index is not None and 0 <= self.ignore_index < c:
            keep &= target != self.ignore_index
        pred, target = pred[keep], target[keep]
        # Predictions outside [0, C) go to the void column C.
        pred = torch.where((pred >= 0) & (pred < c), pred, torch.full_like(pred, c))
        counts = torch.bincount(target * (c + 1) + pred, minlength=c * (c + 1)).view(c, c + 1)
        self._table += counts
        if image is not None and self._images is not None:
            self._images[image] = class_counts(counts)

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another matrix's counts (e.g. from another process)."""
        self._table += other._table.to(self._table.device)

    def table(self) -> torch.Tensor:
        """The full ``[C, C + 1]`` table (for all-reduce across ranks or checkpointing)."""
        return self._table

    def image_table(self) -> torch.Tensor | None:
        """The per-image ``[images, 3, C]`` counts (for all-reduce across ranks), or None."""
        return self._images

    def per_image(self, evaluated: int | None = None) -> SegImageCounts | None:
        """Each image's per-class (tp, gt, pred) counts as numpy, or None for a matrix made without
        ``images``. ``evaluated``: how many leading images the run covered (default all)."""
        if self._images is None:
            return None
        host = self._images.cpu().numpy()
        n = host.shape[0]
        done = np.zeros(n, dtype=bool)
        done[: n if evaluated is None else evaluated] = True
        return SegImageCounts(evaluated=done, tp=host[:, 0].copy(), gt=host[:, 1].copy(), pred=host[:, 2].copy())

    def compute(self, class_names: Sequence[str] | None = None) -> "SegMetrics":
        return segmentation_metrics(self._table.cpu(), class_names)


def class_counts(table: torch.Tensor) -> torch.Tensor:
    """``[3, C]`` per-class (tp, gt, pred) of a ``[C, C + 1]`` count table: the intersection, the
    valid ground-truth pixels (void predictions are false negatives) and the predicted pixels.
    Additive over images, and all :func:`segmentation_metrics` needs."""
    c = table.shape[0]
    tp = torch.diagonal(table[:, :c])
    return torch.stack([tp, table.sum(dim=1), table[:, :c].sum(dim=0)])


@dataclass
class SegMetrics:
    """Fractions in [0, 1] (NaN where undefined); :meth:`as_record_metrics` gives percentages."""

    per_class_iou: list[float]
    miou: float
    pixel_acc: float
    class_names: list[str] = field(default_factory=list)
    num_pixels: int = 0
    num_valid_classes: int = 0

    def iou_by_name(self) -> dict[str, float]:
        names = self.class_names or [str(i) for i in range(len(self.per_class_iou))]
        return dict(zip(names, self.per_class_iou))

    def as_record_metrics(self) -> dict[str, Any]:
        """``{"miou", "pixel_acc"}`` in percent plus ``per_class_iou`` (percent, None for NaN)."""

        def pct(v: float) -> float | None:
            return None if math.isnan(v) else 100.0 * v

        return {
            "miou": pct(self.miou),
            "pixel_acc": pct(self.pixel_acc),
            "per_class_iou": {k: pct(v) for k, v in self.iou_by_name().items()},
        }


def segmentation_metrics(table: torch.Tensor, class_names: Sequence[str] | None = None) -> SegMetrics:
    """Metrics from a ``[C, C]`` or ``[C, C + 1]`` count table (rows ground truth)."""
    table = table.to(torch.int64).cpu()
    c = table.shape[0]
    if table.shape not in ((c, c), (c, c + 1)):
        raise ValueError(f"confusion table must be [C, C] or [C, C+1], got {tuple(table.shape)}")
    if table.shape == (c, c):
        table = torch.cat([table, torch.zeros(c, 1, dtype=torch.int64)], dim=1)
    tp, gt_total, pred_total = class_counts(table).tolist()
    return metrics_from_counts(tp, gt_total, pred_total, class_names)


def metrics_from_counts(tp: Sequence[int], gt: Sequence[int], pred: Sequence[int],
                        class_names: Sequence[str] | None = None) -> SegMetrics:
    """Metrics from per-class (tp, gt, pred) totals (:func:`class_counts`; or per-image counts
    summed over the images: the same integers, so the same metrics to the last bit)."""
    tp, gt, pred = ([int(v) for v in a] for a in (tp, gt, pred))
    denom = [g + p - t for t, g, p in zip(tp, gt, pred)]  # TP + FN + FP
    ious = [float(t) / float(d) if d > 0 else float("nan") for t, d in zip(tp, denom)]
    valid = [v for v in ious if not math.isnan(v)]
    miou = sum(valid) / len(valid) if valid else float("nan")
    n = sum(gt)
    pixel_acc = float(sum(tp)) / n if n else float("nan")
    return SegMetrics(
        per_class_iou=ious,
        miou=miou,
        pixel_acc=pixel_acc,
        class_names=list(class_names) if class_names else [],
        num_pixels=n,
        num_valid_classes=len(valid),
    )

"""Per-image outcomes of a run: a classifier's hits (:class:`SampleOutcomes`), a segmenter's
pixel counts (:class:`SegImageCounts`). numpy only: the results layer reads them without torch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SampleOutcomes:
    """Per-image outcomes of one shift, in dataset order (position i = sample i of the dataset).

    ``evaluated`` is False where the image was not part of the run (a corrupt image skipped, or
    outside the selection); ``pred`` is -1 there and ``correct[k]`` False.
    """

    evaluated: np.ndarray  # bool [N]
    pred: np.ndarray  # int64 [N]: top-1 predicted class
    correct: dict[int, np.ndarray]  # k -> bool [N]: target among the top k

    def __len__(self) -> int:
        return int(self.evaluated.size)

    def counts(self) -> dict[int, int]:
        """Correct images per k: equal to the run's integer :class:`TopKCounts` by construction."""
        return {k: int(np.count_nonzero(v & self.evaluated)) for k, v in self.correct.items()}


@dataclass
class SegImageCounts:
    """Per-image per-class pixel counts of a segmentation run, in dataset order (row i = sample i).

    For each image and class: ``tp`` (ground truth c predicted c: the intersection), ``gt`` (valid
    ground-truth pixels of c, void predictions included: TP + FN) and ``pred`` (pixels predicted c
    on valid ground truth: TP + FP); the union is ``gt + pred - tp``. All int64 and additive, so
    the sums over images are exactly the whole set's confusion-matrix totals (and so its IoUs,
    mIoU and pixel accuracy). Rows of images outside the run (``evaluated`` False) are zero.
    """

    evaluated: np.ndarray  # bool [N]
    tp: np.ndarray  # int64 [N, C]
    gt: np.ndarray  # int64 [N, C]
    pred: np.ndarray  # int64 [N, C]

    def __len__(self) -> int:
        return int(self.evaluated.size)

    @property
    def num_classes(self) -> int:
        return int(self.tp.shape[1])

    def totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(tp, gt, pred)`` per class summed over the evaluated images."""
        rows = self.evaluated
        return tuple(a[rows].sum(axis=0, dtype=np.int64) for a in (self.tp, self.gt, self.pred))  # type: ignore[return-value]

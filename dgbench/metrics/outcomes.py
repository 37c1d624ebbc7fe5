"""Per-image outcomes of a classification run (numpy only: the results layer reads them without torch)."""
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

"""``scene-digit-crops``: the handwritten test digits as they sit in the digit scenes, cut out off-centre.

A natural-shift test set of the built-in benchmark (evaluation only). For every occupied cell of
the ``digit-scenes`` test split (:mod:`.digit_scenes`: 2 to 4 handwritten test digits on a 2x2
grid), a 32x32 window is cut around the cell, displaced by a seeded offset of up to
:data:`JITTER` pixels per axis (zero outside the scene): the digit is off-centre, partly cut, and
a neighbour's strokes may come into view. The label is the cell's digit. The glyphs are the
same scans as ``digits``' test split, so the shift is one of position and clutter, not of
appearance (typeset-digits is the appearance shift).
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import torch

from ..data.base import ClassificationDataset, Preprocess, register_dataset
from ..errors import DgbenchError
from .digit_scenes import CELL, GRID, make_scenes
from .digits import NUM_CLASSES, PREPROCESS, prepare_grey
from .domains import NATURAL_DIGIT_DOMAINS

DOMAIN = NATURAL_DIGIT_DOMAINS[0]
SOURCE_SCENES = "digit-scenes"
JITTER = 4  # pixels of displacement per axis, at most (an eighth of a cell)
SEED = 0
VERSION = 1  # bump when the cutting changes (part of the fingerprint)


@functools.lru_cache(maxsize=1)
def crops(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 32, 32] grey, int64 [N] labels)``: one crop per occupied test-scene cell."""
    images, labels = make_scenes(SOURCE_SCENES, "test")
    grey = np.pad(images[..., 0], ((0, 0), (JITTER, JITTER), (JITTER, JITTER)))
    rng = np.random.default_rng([seed, VERSION])
    out, ys = [], []
    for i in range(len(images)):
        for cell in range(GRID * GRID):
            y0, x0 = (cell // GRID) * CELL, (cell % GRID) * CELL
            lab = labels[i, y0 : y0 + CELL, x0 : x0 + CELL]
            digits = lab[lab < NUM_CLASSES]
            if digits.size == 0:  # an empty cell
                continue
            dy, dx = (int(v) for v in rng.integers(-JITTER, JITTER + 1, size=2))
            y, x = y0 + JITTER + dy, x0 + JITTER + dx
            out.append(grey[i, y : y + CELL, x : x + CELL])
            ys.append(int(np.bincount(digits).argmax()))
    return np.stack(out), np.asarray(ys, dtype=np.int64)


class SceneDigitCrops(ClassificationDataset):
    """The crops as the engine's ``(uint8 [3, H, W], label)``, resized/cropped per the model's preprocessing."""

    name = DOMAIN
    num_classes = NUM_CLASSES

    def __init__(self, preprocess: Preprocess | None = None):
        self.preprocess = preprocess or PREPROCESS
        grey, labels = crops()
        self.grey, self.labels = grey, torch.from_numpy(labels)
        self.images = prepare_grey(torch.from_numpy(grey), self.preprocess, self.name)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.name}|{SOURCE_SCENES}/test|jitter={JITTER}|seed={SEED}|v{VERSION}".encode())
        h.update(np.ascontiguousarray(self.grey).tobytes())
        h.update(self.labels.numpy().astype("<i8").tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "builtin": True, "source": f"{SOURCE_SCENES} test split, one crop per digit",
                "num_samples": len(self), "jitter_px": JITTER, "seed": SEED, "version": VERSION}


@register_dataset(DOMAIN)
def build_scene_digit_crops(root: Any = None, *, split: str = "test", preprocess: Preprocess | None = None,
                            **options: Any) -> SceneDigitCrops:
    """The built-in ``scene-digit-crops`` test set (``root`` must be None; test split only)."""
    if root is not None:
        raise DgbenchError(f"{DOMAIN!r} is built into dgbench and takes no data root (got {root})")
    if split not in ("test", "val") or options:
        raise DgbenchError(f"{DOMAIN!r} has only a test split and no options (got split={split!r}, {sorted(options)})")
    return SceneDigitCrops(preprocess)

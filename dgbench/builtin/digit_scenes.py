"""Digit scenes: a built-in segmentation pair that needs no download (a miniature Table 6).

A scene is a 64x64 black canvas cut into a 2x2 grid of 32x32 cells; 2 to 4 random cells each hold
one digit of the built-in digits data (:mod:`.digits`), its 8x8 ink counts (0..16) upsampled 4x
with nearest neighbours (the digits benchmark's input scale) and drawn as grey ``round(v * 255 / 16)`` in RGB. Per-pixel classes
(11): the digit's class (0..9) where its ink count is >= :data:`INK_THRESHOLD`, ``background``
(10) where the canvas is empty, and 255 (ignored) on the faint rim of a stroke (counts 1..7),
where "is this pixel the digit?" has no right answer.

Two domains, like Cityscapes and GTA5: ``digit-scenes`` pastes the handwritten scans and
``typeset-digit-scenes`` the typeset glyphs (``typeset-digits``). Train scenes use only each
domain's train digits and test scenes its test digits. Scenes are a pure function of
(domain, split, seed), generated in memory.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.base import register_dataset
from ..errors import DgbenchError, UnknownNameError
from .digits import LEVELS, digit_images
from .digits import MEAN as DIGITS_MEAN
from .digits import STD as DIGITS_STD
from .domains import SCENE_DOMAINS

SPLITS = ("train", "test")
SCENE_SIZE = 64
CELL = 32
UPSAMPLE = CELL // 8
GRID = SCENE_SIZE // CELL
INK_THRESHOLD = 8
NUM_CLASSES = 11
BACKGROUND = 10
CLASS_NAMES = [str(i) for i in range(10)] + ["background"]
SCENES_PER_SPLIT = {"train": 400, "test": 200}
SCENE_SEED = 0
VERSION = 1  # bump when the generator changes (part of the fingerprint)
# The scene models normalize as their backbones were pretrained: with the digits benchmark's
# statistics (as the Cityscapes models use ImageNet's).
MEAN: tuple[float, float, float] = DIGITS_MEAN
STD: tuple[float, float, float] = DIGITS_STD


def make_scenes(domain: str, split: str = "train", n: int | None = None, seed: int = SCENE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 64, 64, 3], labels uint8 [N, 64, 64])`` of ``domain``'s ``split``."""
    if domain not in SCENE_DOMAINS:
        raise UnknownNameError("digit-scenes domain", domain, SCENE_DOMAINS)
    split = "test" if split == "val" else split
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS + ("val",))
    n = SCENES_PER_SPLIT[split] if n is None else n
    digits, classes = digit_images(SCENE_DOMAINS[domain], split)
    rng = np.random.default_rng([seed, list(SCENE_DOMAINS).index(domain), SPLITS.index(split)])
    images = np.zeros((n, SCENE_SIZE, SCENE_SIZE), dtype=np.uint8)
    labels = np.full((n, SCENE_SIZE, SCENE_SIZE), BACKGROUND, dtype=np.uint8)
    for i in range(n):
        k = int(rng.integers(2, 5))
        for cell in rng.choice(GRID * GRID, size=k, replace=False):
            j = int(rng.integers(len(digits)))
            ink = np.kron(digits[j].astype(np.int32), np.ones((UPSAMPLE, UPSAMPLE), dtype=np.int32))
            y0, x0 = (int(cell) // GRID) * CELL, (int(cell) % GRID) * CELL
            images[i, y0 : y0 + CELL, x0 : x0 + CELL] = np.round(ink * 255 / LEVELS).astype(np.uint8)
            lab = np.where(ink >= INK_THRESHOLD, int(classes[j]), np.where(ink > 0, 255, BACKGROUND))
            labels[i, y0 : y0 + CELL, x0 : x0 + CELL] = lab
    return np.repeat(images[..., None], 3, axis=-1), labels


class DigitScenes(Dataset):
    """``ds[i] -> (uint8 image [3, 64, 64], int64 classes [64, 64], name)``; ``load(i)`` for training."""

    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    ignore_index = 255

    def __init__(self, domain: str = "digit-scenes", split: str = "test", *, n: int | None = None, seed: int = SCENE_SEED):
        self.name, self.domain, self.seed = domain, domain, seed
        self.split = "test" if split == "val" else split
        self.images, self.labels = make_scenes(domain, self.split, n, seed)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.labels[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        img = torch.from_numpy(self.images[index]).permute(2, 0, 1).contiguous()
        return img, torch.from_numpy(self.labels[index].astype(np.int64)), self.sample_id(index)

    def sample_id(self, index: int) -> str:
        """The scene's stable name (its per-image outcomes are ordered by it)."""
        return f"{self.domain}_{self.split}_{index:05d}"

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.domain}/{self.split}/{self.seed}/v{VERSION}".encode())
        h.update(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.domain, "split": self.split, "num_scenes": len(self), "seed": self.seed,
                "generator_version": VERSION, "built_in": True}


def _builder(domain: str) -> Any:
    # The registry's common signature; a scene's preprocessing is the inference mode, not a resize.
    def build(root: Any = None, *, split: str = "test", preprocess: Any = None, **options: Any) -> DigitScenes:
        if root is not None:
            raise DgbenchError(f"{domain!r} is built into dgbench and takes no data root (got {root})")
        return DigitScenes(domain, split, **options)

    build.__name__ = f"build_{domain.replace('-', '_')}"
    build.__doc__ = f"Builder of the built-in {domain!r} scenes (``root`` must be None)."
    return build


for _domain in SCENE_DOMAINS:
    register_dataset(_domain, task="segmentation")(_builder(_domain))

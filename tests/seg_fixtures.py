"""Tiny Cityscapes and GTA5 trees in their official layouts, written into a test's tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dgbench.data.seg_base import TRAIN_TO_LABEL

# Cityscapes labelIds present in label images (0..33); the 19 evaluated ones are TRAIN_TO_LABEL[:19].
ALL_LABEL_IDS = np.arange(34, dtype=np.uint8)
EVAL_LABEL_IDS = TRAIN_TO_LABEL[:19].copy()


def blocky_label(rng: np.random.Generator, h: int, w: int, ids: np.ndarray, block: int = 8) -> np.ndarray:
    """A label map of constant blocks (like real regions) drawn from ``ids``."""
    small = rng.choice(ids, size=(-(-h // block), -(-w // block)))
    return np.kron(small, np.ones((block, block), dtype=np.uint8))[:h, :w].astype(np.uint8)


def image_for(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB image whose colour depends on the label (so a net can learn something) plus noise."""
    base = (label.astype(np.int32)[..., None] * np.array([7, 13, 29])) % 256
    noise = rng.integers(-20, 21, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_cityscapes(
    root: Path,
    split: str = "val",
    cities: tuple[str, ...] = ("aachen", "bochum"),
    per_city: int = 2,
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> Path:
    """``root/leftImg8bit/{split}/{city}/*`` and ``root/gtFine/{split}/{city}/*`` (w x h = size)."""
    rng = np.random.default_rng(seed)
    w, h = size
    for city in cities:
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i in range(per_city):
            stem = f"{city}_{i:06d}_{19 + i:06d}"
            lab = blocky_label(rng, h, w, ALL_LABEL_IDS)
            Image.fromarray(image_for(lab, rng)).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(lab).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
    return root


def make_gta5(
    root: Path,
    n: int = 8,
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
    split_mat: bool = True,
) -> Path:
    """``root/images/0000k.png``, ``root/labels/0000k.png`` (palette PNGs, as GTA5's) + split.mat."""
    rng = np.random.default_rng(seed)
    w, h = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    palette = [c for i in range(256) for c in (i * 3 % 256, i * 5 % 256, i * 7 % 256)]
    for k in range(1, n + 1):
        lab = blocky_label(rng, h, w, ALL_LABEL_IDS)
        Image.fromarray(image_for(lab, rng)).save(root / "images" / f"{k:05d}.png")
        im = Image.fromarray(lab, mode="L").convert("P")
        im.putpalette(palette)
        im.putdata(lab.ravel().tolist())  # the palette index is the labelId
        im.save(root / "labels" / f"{k:05d}.png")
    if split_mat:
        from scipy.io import savemat

        ids = np.arange(1, n + 1)
        ntr = n // 2
        savemat(
            root / "split.mat",
            {
                "trainIds": ids[:ntr].reshape(-1, 1).astype(np.float64),
                "valIds": ids[ntr : ntr + n // 4].reshape(-1, 1).astype(np.float64),
                "testIds": ids[ntr + n // 4 :].reshape(-1, 1).astype(np.float64),
            },
        )
    return root

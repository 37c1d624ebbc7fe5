"""The built-in data: handwritten digits (``digits``) and typeset digits (``typeset-digits``).

Nothing is downloaded: ``digits`` is scikit-learn's bundled copy of the UCI optical-recognition
test set (1,797 scans of 10 classes; each a 32x32 binary bitmap reduced to 8x8 by counting the
on-pixels of 4x4 blocks, so values are 0..16), and ``typeset-digits`` renders the same ten digits
from matplotlib's bundled fonts through the same quantization (:mod:`dgbench.data.typeset`), with the real
set's class counts. The pair is a miniature of the paper's real-vs-synthetic gap.

Split (each domain its own, same procedure): stratified and seeded: within each class, a
``numpy.random.RandomState(SPLIT_SEED)`` permutation puts ``round(n_c * TEST_FRACTION)`` samples
in ``test`` and the rest in ``train`` (indices then sorted). For ``digits``: 1,198 train / 599
test. ``val`` is accepted as a synonym of ``test`` (as ImageNet's val is its evaluation split).

Input: an 8x8 value ``v`` in 0..16 becomes the grey level ``round(v * 255 / 16)``, replicated to
RGB, and is upsampled 4x to 32x32 with **nearest** neighbours. Nearest, not bilinear, because it
is lossless: every 4x4 block of the 32x32 image is the cell that counted that 4x4 block of the
original bitmap, every pixel keeps one of the 17 data levels, and the appearance shifts act on
exactly the data's values. :data:`INPUT_SIZE` = 32; :data:`MEAN`/:data:`STD` are the real train
split's statistics (models trained here normalize with them).
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import typeset
from ..data.base import ClassificationDataset, Preprocess, register_dataset
from ..errors import DgbenchError, UnknownNameError
from .domains import DIGIT_DOMAINS as DOMAINS

SPLITS: tuple[str, ...] = ("train", "test")
SPLIT_SEED = 0
TEST_FRACTION = 1 / 3
TYPESET_SEED = 0  # the seed of the shipped typeset set (jitter of font, position, scale, stroke)
LEVELS = 16  # 8x8 values are 0..LEVELS
INPUT_SIZE = 32
UPSAMPLE = INPUT_SIZE // 8
NUM_CLASSES = 10
# Grey-level mean/std of the real train split in [0, 1] (tests/test_digits.py recomputes them).
MEAN: tuple[float, float, float] = (0.3058,) * 3
STD: tuple[float, float, float] = (0.3762,) * 3
# The native geometry: 8x8 -> 32x32, nearest, no crop (what training and the small models use).
PREPROCESS = Preprocess(resize_size=INPUT_SIZE, crop_size=INPUT_SIZE, interpolation="nearest")


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise UnknownNameError("digits domain", domain, DOMAINS)


def _check_split(split: str) -> str:
    split = "test" if split == "val" else split
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS + ("val",))
    return split


@functools.lru_cache(maxsize=None)
def _real() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.uint8)  # float64 holding integers 0..16
    if not np.array_equal(images, d.images):
        raise DgbenchError("sklearn's load_digits returned non-integer values; expected 0..16")
    return images, d.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _typeset(seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Class counts of the real set, so the two domains are the same size and balance.
    counts = np.bincount(_real()[1], minlength=NUM_CLASSES)
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), counts)
    return typeset.generate(labels, seed), labels


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> dict[str, np.ndarray]:
    """Stratified split: ``{"train": idx, "test": idx}``, sorted, disjoint, covering all."""
    rng = np.random.RandomState(seed)
    test: list[np.ndarray] = []
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        perm = rng.permutation(idx)
        test.append(perm[: int(round(len(idx) * test_fraction))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return {"train": train_idx, "test": test_idx}


def digit_images(domain: str, split: str = "train", *, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """8x8 glyphs of a domain's split: ``(uint8 [N, 8, 8] in 0..16, int64 [N] labels)``.

    ``split`` is ``train``, ``test`` (or ``val``), or ``all``. ``seed`` picks the typeset
    generation (default :data:`TYPESET_SEED`); the real scans ignore it. Reused by the
    segmentation "digit scenes". Returns fresh copies (callers may modify them).
    """
    _check_domain(domain)
    if domain == "digits":
        images, labels = _real()
    else:
        images, labels = _typeset(TYPESET_SEED if seed is None else int(seed))
    if split == "all":
        return images.copy(), labels.copy()
    idx = split_indices(labels)[_check_split(split)]
    return images[idx], labels[idx]


def to_rgb(images: np.ndarray | torch.Tensor, size: int = INPUT_SIZE, interpolation: str = "nearest") -> torch.Tensor:
    """8x8 values 0..16 -> uint8 RGB ``[N, 3, size, size]`` (grey ``round(v*255/16)`` replicated).

    ``nearest`` at an integer factor of 8 is the lossless default; ``bilinear`` (antialiased) is
    available for models whose preprocessing asks for it.
    """
    v = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    return grey_to_rgb(torch.round(v * 255.0 / LEVELS), size, size, interpolation)  # exact integers 0..255


def grey_to_rgb(grey: torch.Tensor, size: int, crop: int, interpolation: str = "nearest") -> torch.Tensor:
    """Square grey images ``[N, H, W]`` of integer values 0..255 -> uint8 RGB ``[N, 3, crop, crop]``:
    resized to ``size`` (nearest; otherwise that mode antialiased, then rounded), centre-cropped to
    ``crop``, the grey replicated to three channels. Every built-in image set is prepared by it."""
    x = torch.as_tensor(grey)[:, None].float()
    if size != x.shape[-1]:
        if interpolation == "nearest":
            x = F.interpolate(x, size=(size, size), mode="nearest")
        else:
            x = F.interpolate(x, size=(size, size), mode=interpolation, antialias=True, align_corners=False)
            x = x.round().clamp(0, 255)
    off = (size - crop) // 2
    return x[:, :, off : off + crop, off : off + crop].to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def prepare_grey(grey: torch.Tensor, p: Preprocess, name: str) -> torch.Tensor:
    """Grey images (integer values 0..255) as the dataset contract says: resize the shorter side to
    ``resize_size`` (nearest is lossless at the models' own sizes; any other interpolation is
    antialiased bilinear), centre-crop ``crop_size``, three channels."""
    if p.crop_size > p.resize_size:
        raise DgbenchError(f"crop {p.crop_size} larger than resize {p.resize_size} for {name}")
    return grey_to_rgb(grey, p.resize_size, p.crop_size, "nearest" if p.interpolation == "nearest" else "bilinear")


def digit_tensors(domain: str, split: str = "train", *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as training tensors: ``(uint8 [N, 3, 32, 32], int64 [N])``."""
    images, labels = digit_images(domain, split, seed=seed)
    return to_rgb(images), torch.from_numpy(labels)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float, scaled to [0, 1] and normalized with :data:`MEAN`/:data:`STD`."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


class DigitsDataset(ClassificationDataset):
    """One split of a built-in digits domain, as the engine's ``(uint8 [3, H, W], label)``."""

    num_classes = NUM_CLASSES

    def __init__(self, domain: str, split: str = "test", preprocess: Preprocess | None = None, *, seed: int | None = None):
        _check_domain(domain)
        self.name = domain
        self.split = _check_split(split)
        self.seed = None if domain == "digits" else (TYPESET_SEED if seed is None else int(seed))
        self.preprocess = preprocess or PREPROCESS
        self.glyphs, labels = digit_images(domain, self.split, seed=self.seed)
        self.labels = torch.from_numpy(labels)
        self.images = self._prepare(self.glyphs)

    def _prepare(self, glyphs: np.ndarray) -> torch.Tensor:
        grey = torch.round(torch.as_tensor(np.asarray(glyphs), dtype=torch.float32) * 255.0 / LEVELS)
        return prepare_grey(grey, self.preprocess, self.name)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def fingerprint(self) -> str:
        """sha256 of the split's glyph bytes and labels, with the generator's version and seed.

        Preprocessing (the resize) is not part of the data's identity; records store it apart.
        """
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.split}|split_seed={SPLIT_SEED}|test_fraction={TEST_FRACTION!r}".encode())
        if self.seed is not None:
            h.update(f"|generator=v{typeset.GENERATOR_VERSION}|seed={self.seed}".encode())
        h.update(np.ascontiguousarray(self.glyphs).tobytes())
        h.update(self.labels.numpy().astype("<i8").tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.name,
            "builtin": True,
            "source": "sklearn.datasets.load_digits (UCI optdigits)" if self.name == "digits"
            else "matplotlib fonts (DejaVu, STIX) via dgbench.data.typeset",
            "split": self.split,
            "num_samples": len(self),
            "split_seed": SPLIT_SEED,
            "test_fraction": round(TEST_FRACTION, 6),
            "input_size": [3, self.preprocess.crop_size, self.preprocess.crop_size],
            "upsample": f"8x8 -> {self.preprocess.resize_size} ({self.preprocess.interpolation})",
        }
        if self.seed is not None:
            info.update(generator_seed=self.seed, generator_version=typeset.GENERATOR_VERSION)
        return info


def _builder(domain: str):
    def build(root: Any, *, split: str = "test", preprocess: Preprocess | None = None, seed: int | None = None, **options: Any) -> DigitsDataset:
        if root is not None:
            raise DgbenchError(f"{domain!r} is built into dgbench and takes no data root (got {root})")
        if options:
            raise DgbenchError(f"unknown option(s) for {domain!r}: {', '.join(sorted(options))}")
        return DigitsDataset(domain, split, preprocess, seed=seed)

    build.__name__ = f"build_{domain.replace('-', '_')}"
    build.__doc__ = f"Builder of the built-in {domain!r} dataset (``root`` must be None)."
    return build


for _domain in DOMAINS:
    register_dataset(_domain)(_builder(_domain))

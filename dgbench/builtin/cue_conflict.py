"""The built-in cue-conflict digits (``digit-cue-conflict``): the shape of one digit drawn with
a texture made of another, a miniature of Geirhos et al.'s cue-conflict images.

Made from the handwritten digits' *test* split (the models never trained on these glyphs), at
the built-in input size (32x32, :mod:`.digits`), deterministically, in memory, in well under a
second. For every ordered pair of classes (shape ``a``, texture ``b``), :data:`PER_PAIR` images:

1. a seeded ``numpy.random.RandomState(SEED)`` draws one test glyph of class ``a`` (the *shape*)
   and one of class ``b`` (the *texture*), both 8x8 in 0..16;
2. the texture is the ``b`` glyph at its native 8x8 size, tiled 4x4 over the 32x32 frame: sixteen
   miniature copies of ``b``, a quarter of the size at which the models saw digits;
3. the shape is the ``a`` glyph upsampled to 32x32 as the models' input is (nearest, 4x);
4. the image is the texture seen through the shape: ``shape * texture / 16`` per pixel (0..16,
   where the shape has ink the texture shows, elsewhere black), then grey ``round(v * 255 / 16)``.

So the coarse layout of the ink (where the strokes run across the frame) belongs to ``a`` and
the fine pattern inside it (the strokes of 8-pixel copies of ``b``) to ``b``. What the set does
not have: Geirhos' images come from style transfer, which keeps edges of the content image;
here the shape's edges are the texture's own edges cut by the shape, so a network can also
find ``a`` only at the scale of the 4x4 blocks it was trained on. The same-class images
(``a == b``, 1 in 10) are kept, as in the official set, and excluded from the shape bias.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import torch

from ..data.base import ClassificationDataset, Preprocess, register_dataset
from ..errors import DgbenchError
from .digits import INPUT_SIZE, LEVELS, NUM_CLASSES, PREPROCESS, digit_images, prepare_grey
from .domains import CUE_CONFLICT_DOMAINS

NAME = "digit-cue-conflict"
SOURCE_DOMAIN = CUE_CONFLICT_DOMAINS[NAME]  # glyphs and models of this domain
GENERATOR_VERSION = 1  # bump when the rendering changes: fingerprints must not collide
SEED = 0
PER_PAIR = 6  # images per (shape, texture) class pair: 10 x 10 x 6 = 600
TILE = 8  # the texture's period in pixels: the glyph at its native 8x8


def render(shape_glyph: np.ndarray, texture_glyph: np.ndarray) -> np.ndarray:
    """One cue-conflict image, uint8 ``[32, 32]`` grey, from two 8x8 glyphs in 0..16."""
    up = INPUT_SIZE // shape_glyph.shape[0]
    shape = np.kron(shape_glyph.astype(np.float64), np.ones((up, up)))  # nearest upsampling
    reps = INPUT_SIZE // TILE
    texture = np.tile(texture_glyph.astype(np.float64), (reps, reps))
    value = shape * texture / LEVELS  # 0..16
    return np.round(value * 255.0 / LEVELS).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def generate(seed: int = SEED, per_pair: int = PER_PAIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(uint8 images [N, 32, 32], shape labels [N], texture labels [N])``, shape-major order."""
    glyphs, labels = digit_images(SOURCE_DOMAIN, "test")
    by_class = [np.flatnonzero(labels == c) for c in range(NUM_CLASSES)]
    rng = np.random.RandomState(seed)
    images, shapes, textures = [], [], []
    for a in range(NUM_CLASSES):
        for b in range(NUM_CLASSES):
            for _ in range(per_pair):
                ia, ib = int(rng.choice(by_class[a])), int(rng.choice(by_class[b]))
                images.append(render(glyphs[ia], glyphs[ib]))
                shapes.append(a)
                textures.append(b)
    return np.stack(images), np.array(shapes, dtype=np.int64), np.array(textures, dtype=np.int64)


class DigitCueConflict(ClassificationDataset):
    """The built-in cue-conflict digits as ``(uint8 [3, 32, 32], shape label)``; the texture
    labels and the category map (each digit is its own category) beside them."""

    name = NAME
    num_classes = NUM_CLASSES
    category_names: tuple[str, ...] = tuple(str(d) for d in range(NUM_CLASSES))
    category_members: tuple[tuple[int, ...], ...] = tuple((d,) for d in range(NUM_CLASSES))
    num_outputs = NUM_CLASSES  # the models trained on the digits: one output per digit
    trained_on = SOURCE_DOMAIN  # whose models `--model all` means

    def __init__(self, preprocess: Preprocess | None = None):
        self.preprocess = preprocess or PREPROCESS
        grey, shapes, textures = generate()
        self.grey = grey
        self.images = prepare_grey(torch.from_numpy(grey), self.preprocess, NAME)
        self.shape_labels, self.texture_labels = shapes.tolist(), textures.tolist()

    def __len__(self) -> int:
        return len(self.shape_labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.shape_labels[index]

    def fingerprint(self) -> str:
        """sha256 of the generator's version and seed, the images' bytes and both labels."""
        h = hashlib.sha256(f"{NAME}|generator=v{GENERATOR_VERSION}|seed={SEED}|per_pair={PER_PAIR}".encode())
        h.update(np.ascontiguousarray(self.grey).tobytes())
        h.update(np.asarray(self.shape_labels, dtype="<i8").tobytes())
        h.update(np.asarray(self.texture_labels, dtype="<i8").tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": NAME, "builtin": True, "source": f"{SOURCE_DOMAIN} test split, dgbench.builtin.cue_conflict",
                "generator_version": GENERATOR_VERSION, "seed": SEED, "per_pair": PER_PAIR, "tile": TILE,
                "num_samples": len(self), "input_size": [3, self.preprocess.crop_size, self.preprocess.crop_size]}


@register_dataset(NAME)
def build_digit_cue_conflict(root: Any, *, split: str = "test", preprocess: Preprocess | None = None,
                             **options: Any) -> DigitCueConflict:
    """Builder of the built-in ``digit-cue-conflict`` set (``root`` must be None)."""
    if root is not None:
        raise DgbenchError(f"{NAME!r} is built into dgbench and takes no data root (got {root})")
    if split not in ("test", "val"):
        raise DgbenchError(f"{NAME!r} has one split, test (got {split!r})")
    if options:
        raise DgbenchError(f"unknown option(s) for {NAME!r}: {', '.join(sorted(options))}")
    return DigitCueConflict(preprocess)

"""``digits-dg``: the built-in multi-domain set for leave-one-domain-out training (no download).

Three domains of the ten digits, each with the handwritten set's 1,797 images and class counts:

* ``digits``: the handwritten scans (:mod:`.digits`, all of them: the held-in/held-out split of
  the protocol replaces the digits' own train/test split);
* ``typeset-digits``: the glyphs rendered from matplotlib's fonts (generator seed 0, as shipped);
* ``stylized-digits``: *other* typeset glyphs (generator seed :data:`STYLE_SEED`, so no image of
  ``typeset-digits`` reappears) drawn in a random ink colour on a random background colour per
  image (seeded; the two colours' luminances at least :data:`MIN_CONTRAST` apart, either way
  round), a colour/contrast shift of the kind instance normalization is meant to absorb. It shares
  the fonts' shapes with ``typeset-digits``, as PACS's domains share their objects.

Images are the 8x8 glyphs upsampled 2x with nearest neighbours to :data:`SIZE` = 16 pixels: no
information is lost (the glyphs are 8x8), and training costs a third of 32 pixels on a CPU.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ..data.domain_folders import DomainData
from . import digits as D
from .domains import DG_SETS

NAME = "digits-dg"
DOMAINS = DG_SETS[NAME]
SIZE = 16
STYLE_SEED = 1  # typeset generator seed of stylized-digits (typeset-digits ships seed 0)
COLOUR_SEED = 0
MIN_CONTRAST = 0.35  # luminance difference of ink and background, in [0, 1]


def _colours(n: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (ink, background) RGB pairs in [0, 1] whose luminances differ by >= MIN_CONTRAST."""
    lum = np.array([0.299, 0.587, 0.114])
    ink, bg = np.empty((n, 3)), np.empty((n, 3))
    for i in range(n):
        while True:
            a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
            if abs(float(a @ lum) - float(b @ lum)) >= MIN_CONTRAST:
                ink[i], bg[i] = a, b
                break
    return ink, bg


def stylize(glyphs: np.ndarray, seed: int = COLOUR_SEED) -> torch.Tensor:
    """8x8 glyphs (0..16) -> uint8 ``[N, 3, SIZE, SIZE]``: ink colour blended over the background by ink count."""
    ink, bg = _colours(len(glyphs), np.random.RandomState(seed))
    alpha = glyphs.astype(np.float64)[:, None] / D.LEVELS  # [N, 1, 8, 8]
    rgb = bg[:, :, None, None] * (1 - alpha) + ink[:, :, None, None] * alpha
    x = torch.from_numpy(np.round(rgb * 255)).to(torch.uint8)
    return x.repeat_interleave(SIZE // 8, 2).repeat_interleave(SIZE // 8, 3).contiguous()


@functools.lru_cache(maxsize=1)
def load() -> DomainData:
    """The three domains in memory (generated once per process)."""
    images, labels, keys = {}, {}, {}
    for domain in DOMAINS:
        if domain == "stylized-digits":
            glyphs, y = D.digit_images("typeset-digits", "all", seed=STYLE_SEED)
            images[domain] = stylize(glyphs)
        else:
            glyphs, y = D.digit_images(domain, "all")
            images[domain] = D.to_rgb(glyphs, size=SIZE)
        labels[domain] = torch.from_numpy(y)
        keys[domain] = [str(i) for i in range(len(y))]
    return DomainData(NAME, DOMAINS, tuple(str(c) for c in range(D.NUM_CLASSES)), labels, keys, images, SIZE,
                      D.MEAN, D.STD, info={"builtin": True, "size": SIZE, "style_seed": STYLE_SEED,
                                           "colour_seed": COLOUR_SEED})

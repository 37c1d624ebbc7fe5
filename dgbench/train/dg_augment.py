"""DomainBed's training augmentation, drawn from a seeded generator so a resumed run sees the same images.

DomainBed (``domainbed/datasets.py``, ``data_augmentation`` on, the default) trains its
ImageNet-sized sets on: a random resized crop (scale 0.7-1, aspect 3/4-4/3) back to the input
size, a horizontal flip (p = 0.5), a colour jitter of brightness, contrast, saturation and hue by
0.3 each (in a random order) and a grayscale conversion (p = 0.1). dgbench applies the same to the
decoded ``S x S`` uint8 images (DomainBed crops the original file, then resizes: the crop here
sees the image at ``S`` pixels). Every draw comes from a generator seeded by (seed, domain,
step), so step ``s``'s batch is a function of those alone, as the minibatch indices are.
"""
from __future__ import annotations

import hashlib
import math

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor

SCALE = (0.7, 1.0)
RATIO = (3 / 4, 4 / 3)
JITTER = 0.3  # brightness, contrast, saturation (factor in [0.7, 1.3]) and hue (shift in [-0.3, 0.3])
GRAYSCALE_P = 0.1
FLIP_P = 0.5


def generator(seed: int, domain: str, step: int) -> torch.Generator:
    digest = hashlib.sha256(f"augment/{seed}/{domain}/{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g))


def _crop_box(g: torch.Generator, h: int, w: int) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop rule: ten tries at a box of the drawn area and aspect, else the whole image."""
    for _ in range(10):
        area = h * w * _uniform(g, *SCALE)
        ratio = math.exp(_uniform(g, math.log(RATIO[0]), math.log(RATIO[1])))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            return top, left, ch, cw
    return 0, 0, h, w


def _jitter(img: Tensor, g: torch.Generator) -> Tensor:
    ops = [lambda x, f: F.adjust_brightness(x, f), lambda x, f: F.adjust_contrast(x, f),
           lambda x, f: F.adjust_saturation(x, f)]
    factors = [_uniform(g, 1 - JITTER, 1 + JITTER) for _ in ops] + [_uniform(g, -JITTER, JITTER)]
    for i in torch.randperm(4, generator=g).tolist():
        img = F.adjust_hue(img, factors[3]) if i == 3 else ops[i](img, factors[i])
    return img


def augment_one(img: Tensor, g: torch.Generator) -> Tensor:
    """One uint8 ``[3, S, S]`` image through crop, flip, jitter and grayscale (same size and dtype out)."""
    _, h, w = img.shape
    top, left, ch, cw = _crop_box(g, h, w)
    img = F.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)
    if float(torch.rand(1, generator=g)) < FLIP_P:
        img = F.horizontal_flip(img)
    img = _jitter(img, g)
    if float(torch.rand(1, generator=g)) < GRAYSCALE_P:
        img = F.rgb_to_grayscale(img, num_output_channels=3)
    return img


def augment_batch(images: Tensor, seed: int, domain: str, step: int) -> Tensor:
    """Step ``step``'s batch of ``domain``, augmented image by image from one seeded generator."""
    g = generator(seed, domain, step)
    return torch.stack([augment_one(img, g) for img in images])

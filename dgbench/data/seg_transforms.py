"""Training augmentation for segmentation: random scale, aspect ratio, mirror and crop.

Randomness comes from a per-sample generator seeded by (seed, epoch, index) (see
:class:`AugmentedSegmentation`), so a run's data is the same whatever the number of loader
workers and a resumed run sees exactly the samples the interrupted one would have.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .seg_base import IGNORE_INDEX

# Pad value for images: the ImageNet mean, which normalizes to 0.
_MEAN_RGB = (124, 116, 104)


@dataclass(frozen=True)
class SegAugment:
    """Paper: "random scale, aspect ratio and mirror", then random crops.

    The paper gives no ranges or crop size; dgbench's defaults are PSPNet's (same group, same
    year): scale 0.5-2.0 and 713x713 crops, plus an aspect-ratio factor of 0.8-1.25 (log-uniform;
    width x sqrt(r), height / sqrt(r)).
    """

    crop_size: tuple[int, int] = (713, 713)  # (height, width)
    scale_range: tuple[float, float] = (0.5, 2.0)
    aspect_range: tuple[float, float] = (0.8, 1.25)
    mirror: bool = True

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = label.shape
        s = rng.uniform(*self.scale_range)
        r = math.exp(rng.uniform(math.log(self.aspect_range[0]), math.log(self.aspect_range[1])))
        nw, nh = max(1, int(round(w * s * math.sqrt(r)))), max(1, int(round(h * s / math.sqrt(r))))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
        if self.mirror and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        ch, cw = self.crop_size
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            image = cv2.copyMakeBorder(np.ascontiguousarray(image), 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=_MEAN_RGB)
            label = cv2.copyMakeBorder(np.ascontiguousarray(label), 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
        H, W = label.shape
        y0 = int(rng.integers(0, H - ch + 1))
        x0 = int(rng.integers(0, W - cw + 1))
        image = np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])
        label = np.ascontiguousarray(label[y0 : y0 + ch, x0 : x0 + cw])
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(label.astype(np.int64))


class AugmentedSegmentation(Dataset):
    """A segmentation dataset with :class:`SegAugment` applied, seeded per (seed, epoch, index)."""

    def __init__(self, base: Dataset, augment: SegAugment, seed: int = 0) -> None:
        self.base, self.augment, self.seed = base, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.base.load(index)  # type: ignore[attr-defined]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.augment(image, label, rng)

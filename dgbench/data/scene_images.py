"""A segmentation dataset's images as a classification dataset: what a feature analysis reads.

Fig. 5(a) of the paper compares Cityscapes and GTA5 *images* through ImageNet classifiers, so the
divergence protocol needs those images in the shape every classifier loop takes: a uint8
``[3, crop, crop]`` crop made with the model's own preprocessing (shorter side resized with PIL's
antialiased filter, then a center crop: the ImageNet evaluation transform), and a dummy label 0.
The label maps are never read. Identity (name, fingerprint, sample ids) is the wrapped dataset's.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import ClassificationDataset, Preprocess


class SceneImages(ClassificationDataset):
    num_classes = 1  # no class labels: every image is label 0

    def __init__(self, scenes: Any, preprocess: Preprocess):
        self.scenes, self.preprocess = scenes, preprocess
        self.name = scenes.name
        self.decode_info = (f"{scenes.name} image, shorter side resized to {preprocess.resize_size} "
                            f"({preprocess.interpolation}, antialiased), center crop {preprocess.crop_size}")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image, _ = self.scenes.load(index)  # RGB uint8 [H, W, 3]
        im = Image.fromarray(image)
        im = TF.resize(im, self.preprocess.resize_size, interpolation=InterpolationMode(self.preprocess.interpolation))
        return TF.pil_to_tensor(TF.center_crop(im, self.preprocess.crop_size)), 0

    def sample_id(self, index: int) -> str:
        return str(self.scenes.pairs[index].name)

    def fingerprint(self) -> str:
        return self.scenes.fingerprint()

    def describe(self) -> dict[str, Any]:
        return {**self.scenes.describe(), "read_as": "images only", "decode": self.decode_info}

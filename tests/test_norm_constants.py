"""The normalization constants in the registry: the documented values, and the right one per source.

A wrong mean/std does not crash anything; it shifts every number a little. So the constants are
checked against their documented values written out here, and every registered model's
pretrained configuration against the constant that belongs to where its weights come from.
"""
from __future__ import annotations

import numpy as np
import pytest

from dgbench.data import digit_scenes as S
from dgbench.data import digits as D
from dgbench.models import list_models, model_info
from dgbench.models.registry import IMAGENET_MEAN, IMAGENET_STD

# torchvision's documented ImageNet normalization (the authors' evaluation uses the same).
DOC_IMAGENET_MEAN = (0.485, 0.456, 0.406)
DOC_IMAGENET_STD = (0.229, 0.224, 0.225)


def test_imagenet_constants_are_the_documented_ones() -> None:
    assert IMAGENET_MEAN == DOC_IMAGENET_MEAN and IMAGENET_STD == DOC_IMAGENET_STD


def test_digits_constants_are_the_real_train_split_statistics() -> None:
    glyphs, _ = D.digit_images("digits", "train")
    pixels = np.round(glyphs.astype(np.float64) * 255 / 16) / 255  # the grey levels the nets see
    assert D.MEAN == (round(float(pixels.mean()), 4),) * 3 == (0.3058,) * 3
    assert D.STD == (round(float(pixels.std()), 4),) * 3 == (0.3762,) * 3
    assert (S.MEAN, S.STD) == (D.MEAN, D.STD)  # the scenes are drawn from the same glyphs


def _expected(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The constant a model's inputs must be normalized with, from what it is (not from its cfg)."""
    info = model_info(name)
    if info.family == "small" or info.backbone.startswith("small_"):
        return D.MEAN, D.STD  # trained here on the digits / digit scenes
    return DOC_IMAGENET_MEAN, DOC_IMAGENET_STD  # ImageNet weights, or ImageNet-initialized backbones


@pytest.mark.parametrize("name", list_models())
def test_every_pretrained_cfg_uses_the_constant_of_its_source(name: str) -> None:
    cfg = model_info(name).pretrained_cfg
    assert (tuple(cfg.mean), tuple(cfg.std)) == _expected(name), name
    if "ImageNet-1k" in cfg.source:  # the authors' release and torchvision's weights
        assert (tuple(cfg.mean), tuple(cfg.std)) == (DOC_IMAGENET_MEAN, DOC_IMAGENET_STD)
    if cfg.source.startswith("dgbench built-in"):
        assert (tuple(cfg.mean), tuple(cfg.std)) == (D.MEAN, D.STD)

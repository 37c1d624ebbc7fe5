"""The small DeepLabs of the built-in digit scenes (``deeplab_small_resnet*``).

The digits benchmark's small ResNet (:mod:`.small`: CIFAR stem, one BasicBlock per group, narrow
widths) with the zoo's DeepLab dilation and head (:mod:`dgbench.models.deeplab`). The stem keeps
full resolution, so "output stride 8" (groups 3 and 4 dilated) leaves 32x32 features for a 64x64
scene; the ASPP rates shrink to match (2, 4, 6, 8). ``pretrained_backbone`` starts the backbone
from the shipped digits classifier; the scene checkpoints themselves are in :mod:`.checkpoints`.
"""
from __future__ import annotations

import warnings
from typing import Any

from ..models.deeplab import DILATION_FOR_STRIDE, DeepLab, load_backbone_weights
from ..models.registry import PretrainedCfg, model_info, refuse_model, register_model
from ..models.resnet import BasicBlock, ResNet
from . import digit_scenes as S
from .checkpoints import scene_checkpoint_file, scene_manifest
from .names import REFUSED_VARIANTS, VARIANTS, small_name
from .small import LAYERS, WIDTHS

SCENE_ASPP_DILATIONS = (2, 4, 6, 8)


def _scene_cfg(name: str, entries: dict[str, dict[str, Any]]) -> PretrainedCfg:
    rel = scene_checkpoint_file(name, "digit-scenes")
    entry = entries.get(rel.rsplit("/", 1)[-1])
    return PretrainedCfg(
        file=rel if entry else None,
        sha256_prefix=entry["sha256"] if entry else None,
        sha256=entry["sha256"] if entry else None,
        tag="builtin",
        input_size=(3, S.SCENE_SIZE, S.SCENE_SIZE),
        mean=S.MEAN,
        std=S.STD,
        interpolation="nearest",
        crop_pct=1.0,
        num_classes=S.NUM_CLASSES,
        source="dgbench built-in: trained on the digit-scenes train split" if entry
        else "no shipped checkpoint (train with train_segmentation on digit-scenes)",
        license="MIT (dgbench); data: UCI optdigits via scikit-learn (CC BY 4.0)",
    )


def _register_scene(v: str, entries: dict[str, dict[str, Any]]) -> None:
    base = small_name(v)
    name = f"deeplab_{base}"

    def ctor(num_classes: int = S.NUM_CLASSES, _v: str = v.removeprefix("ibn_"), _b: str = base, **kwargs: Any) -> DeepLab:
        output_stride = kwargs.pop("output_stride", 8)
        head = kwargs.pop("head", "aspp_v2")
        dil = kwargs.pop("aspp_dilations", SCENE_ASPP_DILATIONS)
        pretrained_backbone = kwargs.pop("pretrained_backbone", False)
        kwargs.setdefault("stem", "cifar")
        kwargs.setdefault("widths", WIDTHS)
        backbone = ResNet(
            BasicBlock, LAYERS, num_classes=0, variant=_v,
            replace_stride_with_dilation=DILATION_FOR_STRIDE[output_stride], **kwargs,
        )
        if pretrained_backbone:  # the digits classifier's shipped weights
            if pretrained_backbone is True and not model_info(_b).pretrained_cfg.has_weights:
                warnings.warn(f"{_b} has no shipped weights; the backbone starts from random init")
            else:
                load_backbone_weights(backbone, _b, pretrained_backbone)
        return DeepLab(backbone, num_classes, head=head, aspp_dilations=dil, output_stride=output_stride)

    ctor.__name__ = ctor.__qualname__ = name
    ctor.__doc__ = f"DeepLab (v2 ASPP, rates {SCENE_ASPP_DILATIONS}) on {base}, for the built-in digit scenes."
    register_model(
        family="deeplab",
        backbone=base,
        variant="baseline" if v == "baseline" else f"ibn_{v.removeprefix('ibn_')}",
        task="segmentation",
        pretrained_cfg=_scene_cfg(name, entries),
        name=name,
    )(ctor)


for _v, _why in REFUSED_VARIANTS.items():
    refuse_model(f"deeplab_{small_name(_v)}", _why)
_entries = scene_manifest()
for _v in VARIANTS:
    _register_scene(_v, _entries)

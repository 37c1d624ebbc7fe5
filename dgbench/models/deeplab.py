"""DeepLab-style semantic segmentation on the zoo's ResNets (the paper's Section 4.2 models).

"As in [1] (DeepLab), we use ResNet50 with atrous convolution strategy as our baseline, and our
IBN-Net follows the same modification." So:

* backbone: the zoo's :class:`~dgbench.models.resnet.ResNet` of the variant, unchanged (IN
  placement is the zoo's), built with ``replace_stride_with_dilation``: output stride 8 replaces
  the strides of the last two groups by dilation 2 and 4 (16: only the last group, dilation 2);
* head: DeepLab-v2's ASPP (reference [1]): four parallel 3x3 convolutions from the backbone's
  features straight to class scores, dilations 6, 12, 18 and 24, summed. ``head="aspp_v3"``
  gives DeepLab-v3's ASPP instead (1x1 + three dilated 3x3 + image pooling, BN, 256 channels);
* the logits are upsampled bilinearly to the input size, so ``model(x)`` is ``[N, C, H, W]``.

Registered for every ResNet-50 variant of the zoo: ``deeplab_resnet50``, ``deeplab_resnet50_ibn_a``,
``deeplab_resnet50_ibn_b``, ... (aliases ``deeplab_ibn_a``, ...). ``pretrained_backbone=True``
loads the zoo's ImageNet weights of that backbone (its classifier dropped; every backbone key must
match) -- the training entry point does this by default; it is off in the constructor so that
building a model to load a segmentation checkpoint downloads nothing.

State-dict keys: ``backbone.*`` (the ResNet's own keys, without ``fc``) and ``head.*``. The head has
no ``head_name``, so a checkpoint for another number of classes is an error, not a silent skip.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compat import forward
from ..errors import CheckpointError
from .registry import PretrainedCfg, model_info, register_model
from .resnet import RESNET_LAYERS, RESNET_VARIANTS, ResNet

__all__ = ["DeepLab", "ASPPv2", "ASPPv3", "build_deeplab", "load_backbone_weights"]

DILATION_FOR_STRIDE = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}


class ASPPv2(nn.Module):
    """DeepLab-v2 ASPP: parallel dilated 3x3 convolutions to class scores, summed."""

    def __init__(self, in_channels: int, num_classes: int, dilations: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations
        )
        for conv in self.branches:  # DeepLab's initialisation of the classifier layers
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out


class ASPPv3(nn.Module):
    """DeepLab-v3 ASPP: 1x1, dilated 3x3 branches and image pooling, BN+ReLU, fused, classified."""

    def __init__(self, in_channels: int, num_classes: int, dilations: Sequence[int] = (12, 24, 36), channels: int = 256) -> None:
        super().__init__()

        def cbr(k: int, d: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_channels, channels, k, padding=0 if k == 1 else d, dilation=d, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )

        self.branches = nn.ModuleList([cbr(1)] + [cbr(3, d) for d in dilations])
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        n = len(self.branches) + 1
        self.project = nn.Sequential(
            nn.Conv2d(n * channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Dropout(0.1)
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [b(x) for b in self.branches]
        feats.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.classifier(self.project(torch.cat(feats, dim=1)))


class DeepLab(nn.Module):
    """A dilated ResNet backbone plus an ASPP head; ``forward`` returns input-size logits."""

    def __init__(
        self,
        backbone: ResNet,
        num_classes: int = 19,
        head: str = "aspp_v2",
        aspp_dilations: Sequence[int] | None = None,
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.head_type = head
        c = backbone.num_features
        if head == "aspp_v2":
            self.head: nn.Module = ASPPv2(c, num_classes, aspp_dilations or (6, 12, 18, 24))
        elif head == "aspp_v3":
            # v3's rates are given for output stride 16; they double at 8.
            default = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
            self.head = ASPPv3(c, num_classes, aspp_dilations or default)
        else:
            raise ValueError(f"head must be 'aspp_v2' or 'aspp_v3', got {head!r}")

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(self.backbone.forward_features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def param_groups(self, lr: float, head_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer groups (backbone, head); DeepLab trains the new head at ``head_lr_mult`` x lr."""
        return [
            {"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": lr, "lr_mult": 1.0},
            {"params": [p for p in self.head.parameters() if p.requires_grad], "lr": lr * head_lr_mult, "lr_mult": head_lr_mult},
        ]


def load_backbone_weights(backbone: ResNet, backbone_name: str, source: bool | str | os.PathLike = True) -> str:
    """Load the zoo's ImageNet weights of ``backbone_name`` into ``backbone`` (classifier dropped).

    Strict on backbone keys: any missing, unexpected or mis-shaped key is a :class:`CheckpointError`.
    Returns a description of the source.
    """
    from .weights import load_state_dict_strict, read_state_dict, resolve_checkpoint

    info = model_info(backbone_name)
    path, _prefix, origin = resolve_checkpoint(info.pretrained_cfg, source)
    sd = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    load_state_dict_strict(backbone, sd, str(path))
    return origin


def build_deeplab(
    backbone_name: str,
    variant: str,
    num_classes: int = 19,
    *,
    output_stride: int = 8,
    head: str = "aspp_v2",
    aspp_dilations: Sequence[int] | None = None,
    pretrained_backbone: bool | str | os.PathLike = False,
    depth: int = 50,
    **backbone_kwargs: Any,
) -> DeepLab:
    """A :class:`DeepLab` on the zoo's ResNet-``depth`` of ``variant`` (``"baseline"``, ``"a"``, ...)."""
    if output_stride not in DILATION_FOR_STRIDE:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    block, layers = RESNET_LAYERS[depth]
    backbone = ResNet(
        block, layers, num_classes=0, variant=variant,
        replace_stride_with_dilation=DILATION_FOR_STRIDE[output_stride], **backbone_kwargs,
    )
    if pretrained_backbone:
        if pretrained_backbone is True and not model_info(backbone_name).pretrained_cfg.has_weights:
            # No published ImageNet weights for this variant (c, d, ad, a2): say so, train from scratch.
            warnings.warn(f"{backbone_name} has no published ImageNet weights; the backbone starts from random init")
        else:
            try:
                load_backbone_weights(backbone, backbone_name, pretrained_backbone)
            except CheckpointError as exc:
                raise CheckpointError(f"pretrained backbone for deeplab_{backbone_name}: {exc}") from exc
    return DeepLab(backbone, num_classes, head=head, aspp_dilations=aspp_dilations, output_stride=output_stride)


SEG_CFG = PretrainedCfg(
    input_size=(3, 1024, 2048),  # Cityscapes full resolution (whole-image evaluation)
    crop_pct=1.0,
    num_classes=19,
    source="no published segmentation weights (the authors released none); train with train_segmentation",
)


def _register() -> None:
    for suffix, variant in RESNET_VARIANTS.items():
        backbone_name = f"resnet50{suffix}"
        name = f"deeplab_{backbone_name}"

        def ctor(num_classes: int = 19, _v: str = variant, _b: str = backbone_name, **kwargs: Any) -> DeepLab:
            return build_deeplab(_b, _v, num_classes, **kwargs)

        ctor.__name__ = ctor.__qualname__ = name
        ctor.__doc__ = (
            f"DeepLab (v2 ASPP, output stride 8) on {backbone_name} ({variant}).\n\n"
            "Keyword arguments: output_stride (8|16), head (aspp_v2|aspp_v3), aspp_dilations, "
            "pretrained_backbone (True: the zoo's ImageNet weights), and the ResNet's knobs."
        )
        register_model(
            family="deeplab",
            backbone=backbone_name,
            variant="baseline" if variant == "baseline" else f"ibn_{variant}",
            task="segmentation",
            pretrained_cfg=SEG_CFG,
            aliases=(f"deeplab_ibn_{variant}",) if variant != "baseline" else (),
            name=name,
        )(ctor)


_register()


# The small DeepLabs of the built-in digit scenes moved to dgbench.builtin.scene_models, their
# checkpoints to dgbench.builtin.checkpoints; the old names still resolve here for one release.
__getattr__ = forward(__name__, ("dgbench.builtin.scene_models", "dgbench.builtin.checkpoints"), names=(
    "SCENE_ASPP_DILATIONS", "SCENE_CHECKPOINT_DIR", "SCENE_MANIFEST", "scene_checkpoint_file", "scene_manifest",
    "builtin_scene_checkpoints",
))

"""ResNet (and, through its knobs, ResNeXt and SE-ResNet) with every IBN variant of the paper.

One :class:`ResNet` class serves every residual family of the zoo and of the other areas
(the small digit nets use ``stem="cifar"`` and narrow ``widths``; DeepLab uses
``replace_stride_with_dilation``). Where IN goes is decided by :class:`~dgbench.models.ibn.IBNConfig`
(see that module for the per-variant rules); the blocks only ask it for their norm layers.

State-dict keys follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0``,
``fc``) for the baseline, and the authors' release (XingangPan/IBN-Net) for the IBN variants:
an IBN layer is ``bn1.IN`` + ``bn1.BN``, the IN after the addition is the block's ``IN``, and the
SE layer of an SE block is ``se.fc.0`` / ``se.fc.2``. So torchvision's and the authors' published
checkpoints load with ``strict=True``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from .ibn import IBNConfig, Ratio, norm_out_channels, unsupported_reason
from .registry import refuse_model, register_model
from .pretrained import released_weights

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "SELayer", "conv1x1", "conv3x3"]

Stem = Literal["imagenet", "cifar"]


def conv3x3(inp: int, out: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding = dilation (keeps the size at stride 1); no bias before a norm."""
    return nn.Conv2d(inp, out, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=False)


def conv1x1(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 1, stride=stride, bias=False)


class SELayer(nn.Module):
    """Squeeze-and-excitation: channel gates from the global average (no biases, as released)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = int(channels / reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).flatten(1)).view(b, c, 1, 1)


class _ResidualBlock(nn.Module):
    """What both residual blocks share: the signature, the SE gate, the shortcut and the IN after
    the addition. A subclass builds its residual path (``_build_path``, registering its layers in
    torchvision's order so state-dict keys and seeded initialisations stay as released) and runs it
    (``_path``)."""

    expansion: int
    norms: int  # norms on the residual path (IBNConfig.block_norm keeps the last one BN)

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        ibn: IBNConfig | None = None,
        group: int = 4,
        last_in_group: bool = False,
        se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        ibn = ibn or IBNConfig()
        out = self._build_path(inplanes, planes, stride, groups, base_width, dilation, ibn, group)
        self.se = SELayer(out, se_reduction) if se_reduction else None
        self.downsample = downsample
        self.IN = ibn.after_add(out, group, last_in_group)
        self.stride = stride

    def _build_path(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                    dilation: int, ibn: IBNConfig, group: int) -> int:
        """Register the residual path's layers; return its output channels."""
        raise NotImplementedError

    def _path(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self._path(x)
        if self.se is not None:
            out = self.se(out)
        out = out + identity
        if self.IN is not None:
            out = self.IN(out)
        return self.relu(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34).

    Norms come from ``ibn``: ``bn1`` is the first norm of the residual path (IBN in variant a),
    ``bn2`` the second; ``IN`` (or ``None``) follows the addition (variants b, d).
    """

    expansion = 1
    norms = 2

    def _build_path(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                    dilation: int, ibn: IBNConfig, group: int) -> int:
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride, dilation=dilation)
        self.bn1 = ibn.block_norm(1, planes, group, self.norms)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(norm_out_channels(self.bn1, planes), planes, dilation=dilation)
        self.bn2 = ibn.block_norm(2, planes, group, self.norms)
        return planes

    def _path(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (ResNet-50 and deeper).

    ``bn1`` follows the 1x1 reduction (IBN in variant a, IN+BN concat in c), ``bn2`` the 3x3
    (IBN too in a x2), ``bn3`` the expansion (always BN: IN there would misalign the residual
    with the identity, the paper's argument). ``se`` gates ``bn3``'s output in SE-ResNet;
    ``IN`` follows the addition (b, d).
    """

    expansion = 4
    norms = 3

    def _build_path(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                    dilation: int, ibn: IBNConfig, group: int) -> int:
        # ResNeXt's D*C: int(planes * width/64) per group times the cardinality (the authors'
        # floor(planes * baseWidth / 64) * cardinality is the same number).
        width = int(planes * (base_width / 64.0)) * groups
        out = planes * self.expansion
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = ibn.block_norm(1, width, group, self.norms)
        self.conv2 = conv3x3(norm_out_channels(self.bn1, width), width, stride, groups, dilation)
        self.bn2 = ibn.block_norm(2, width, group, self.norms)
        self.conv3 = conv1x1(width, out)
        self.bn3 = ibn.block_norm(3, out, group, self.norms)
        self.relu = nn.ReLU(inplace=True)
        return out

    def _path(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A residual network with an IBN variant.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per residual group (``[3, 4, 6, 3]`` for ResNet-50); 1 to 4 groups.
        num_classes: classifier outputs; ``0`` leaves ``fc`` as an identity (a feature extractor).
        variant: ``"baseline"``, ``"a"``, ``"b"``, ``"c"``, ``"d"``, ``"ad"``, ``"a2"`` (an
            ``ibn_`` prefix is accepted), or an :class:`IBNConfig`.
        ibn_ratio: IN share of each IBN layer (0..1; default 0.5), or ``"full"`` (every BN -> IN).
        ibn_groups: residual groups (1-based) that get the variant's IN, e.g. ``(1, 2)``.
        stem: ``"imagenet"`` (7x7/2 conv + norm + ReLU + 3x3/2 max-pool) or ``"cifar"``
            (3x3/1 conv without bias + norm + ReLU, no pooling; for 32x32 inputs).
        widths: planes of each group (the stem has ``widths[0]`` channels).
        replace_stride_with_dilation: per group after the first, dilate instead of striding
            (as torchvision; DeepLab's output stride 8 is ``(False, True, True)``).
        groups, width_per_group: ResNeXt cardinality and width (32, 4 for 32x4d).
        se_reduction: add an SE layer with this reduction to every block (SE-ResNet: 16).
        in_chans: input channels.
        zero_init_residual: zero the last norm of each block (torchvision's option).

    Global pooling is adaptive, so any input size works; :meth:`forward_features` returns the
    last feature map before pooling.
    """

    head_name = "fc"  # the classifier's key prefix (skipped when loading with another num_classes)

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        variant: str | IBNConfig = "baseline",
        ibn_ratio: Ratio | None = None,
        ibn_groups: Sequence[int] | int | None = None,
        stem: Stem = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
        replace_stride_with_dilation: Sequence[bool] | None = None,
        groups: int = 1,
        width_per_group: int = 64,
        se_reduction: int | None = None,
        in_chans: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= len(layers) <= 4 or len(widths) != len(layers):
            raise ValueError(f"need 1-4 residual groups with one width each, got layers={layers}, widths={widths}")
        dilate = list(replace_stride_with_dilation or [False] * (len(layers) - 1))
        if len(dilate) != len(layers) - 1:
            raise ValueError(f"replace_stride_with_dilation needs {len(layers) - 1} entries, got {dilate}")
        self.ibn = IBNConfig.from_args(variant, ibn_ratio, ibn_groups)
        self.variant = self.ibn.name
        self.groups, self.base_width = groups, width_per_group
        self.se_reduction = se_reduction
        self.dilation = 1
        self.inplanes = widths[0]

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = self.ibn.stem_norm(self.inplanes)
        self.relu = nn.ReLU(inplace=True)

        self.num_groups = len(layers)
        self.feature_channels: list[int] = []  # output channels of layer1..layerN (for FPN/ASPP)
        for i, (n, w) in enumerate(zip(layers, widths)):
            stride, dil = (1, False) if i == 0 else (2, dilate[i - 1])
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, stride, dil, group=i + 1))
            self.feature_channels.append(w * block.expansion)
        self.num_features = self.feature_channels[-1]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int, dilate: bool, group: int) -> nn.Sequential:
        prev_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                self.ibn.downsample_norm(planes * block.expansion),
            )
        common: dict[str, Any] = dict(
            groups=self.groups, base_width=self.base_width, ibn=self.ibn, group=group, se_reduction=self.se_reduction
        )
        blocks_: list[nn.Module] = [
            block(self.inplanes, planes, stride, downsample, dilation=prev_dilation, last_in_group=blocks == 1, **common)
        ]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            blocks_.append(
                block(self.inplanes, planes, dilation=self.dilation, last_in_group=i == blocks - 1, **common)
            )
        return nn.Sequential(*blocks_)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
                if isinstance(m, (BasicBlock, Bottleneck)) and isinstance(last, nn.BatchNorm2d):
                    nn.init.zeros_(last.weight)

    def stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map before global pooling (N, num_features, H/32, W/32 at stride 32)."""
        x = self.stem(x)
        for i in range(1, self.num_groups + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# -- registry -------------------------------------------------------------------------------------

RESNET_LAYERS: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

# Registered ResNet variants: suffix -> IBNConfig variant. a and b are the authors' release;
# c, d, ad (a&d) and a2 (a x2) are the paper's Table 3 variants, never released. a2 exists for
# bottleneck depths only (dgbench.models.ibn.unsupported_reason): resnet18/34_ibn_a2 are refused.
RESNET_VARIANTS: dict[str, str] = {"": "baseline", "_ibn_a": "a", "_ibn_b": "b", "_ibn_c": "c",
                                   "_ibn_d": "d", "_ibn_ad": "ad", "_ibn_a2": "a2"}

_VARIANT_TEXT = {
    "baseline": "plain BN (torchvision keys)",
    "a": "IBN-a: half-IN IBN layer at bn1 of every block in groups 1-3",
    "b": "IBN-b: IN stem norm, IN after the addition of the last block of groups 1-2",
    "c": "IBN-c: IN and BN of all channels concatenated at bn1 in groups 1-3 (adds channels)",
    "d": "IBN-d: half-IN stem norm, IN on half the channels after the last addition of groups 1-2",
    "ad": "IBN-a&d: the layers of a and of d together",
    "a2": "IBN-a x2: a, plus IBN layers at bn2 of the same blocks (bottleneck depths only)",
}


def _make_constructor(name: str, builder: Callable[..., nn.Module], doc: str) -> Callable[..., nn.Module]:
    def constructor(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return builder(num_classes=num_classes, **kwargs)

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = doc
    return constructor


def _register_resnets() -> None:
    for depth, (block, layers) in RESNET_LAYERS.items():
        for suffix, variant in RESNET_VARIANTS.items():
            name = f"resnet{depth}{suffix}"
            reason = unsupported_reason(variant, block.norms)
            if reason:
                refuse_model(name, reason)
                continue

            def build(num_classes: int = 1000, _b: Block = block, _l: tuple[int, ...] = layers,
                      _v: str = variant, **kwargs: Any) -> ResNet:
                return ResNet(_b, _l, num_classes=num_classes, variant=_v, **kwargs)

            doc = (
                f"ResNet-{depth} {_VARIANT_TEXT[variant]}.\n\n"
                "Keyword arguments: ibn_ratio, ibn_groups, stem, widths, replace_stride_with_dilation, "
                "in_chans, zero_init_residual (see :class:`ResNet`; placement in :mod:`dgbench.models.ibn`)."
            )
            aliases: tuple[str, ...] = ()
            if depth == 50 and variant != "baseline":
                aliases = (f"ibn_{variant}",)
            register_model(
                family="resnet",
                backbone=f"resnet{depth}",
                variant="baseline" if variant == "baseline" else f"ibn_{variant}",
                weights=released_weights(name),
                aliases=aliases,
                name=name,
            )(_make_constructor(name, build, doc))


_register_resnets()

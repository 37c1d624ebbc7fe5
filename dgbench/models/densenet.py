"""DenseNet-121/161/169/201 (DenseNet-BC), plain and IBN-a.

Keys are torchvision's (``features.denseblock1.denselayer1.norm1``, ``features.transition1``,
``features.norm5``, ``classifier``), so torchvision checkpoints load (their old ``norm.1`` style
keys are renamed by :meth:`DenseNet.remap_state_dict`, as torchvision does) and so do the authors'.

IBN-a in DenseNet (the authors' placement): in dense blocks 1-3, the first norm (``norm1``, on
the concatenated input) of every third dense layer (``denselayer1``, ``4``, ``7``, ...) is an
:class:`~dgbench.models.ibn.IBN` with IN ratio 0.4, BN on the *first* channels and IN on the
rest (``in_first=False``). Block 4, transitions, the stem and ``norm5`` stay BN.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ibn import IBN, VariantError, _groups
from .registry import register_released

__all__ = ["DenseNet", "DenseLayer", "DenseBlock", "Transition"]

DENSENET_CFGS: dict[int, tuple[int, int, tuple[int, int, int, int]]] = {
    # depth: (growth rate, stem features, layers per block)
    121: (32, 64, (6, 12, 24, 16)),
    161: (48, 96, (6, 12, 36, 24)),
    169: (32, 64, (6, 12, 32, 32)),
    201: (32, 64, (6, 12, 48, 32)),
}
IBN_EVERY = 3  # every third dense layer of an IBN block gets an IBN norm1
DEFAULT_IBN_RATIO = 0.4


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bottleneck) then BN-ReLU-3x3 conv; returns input and new features concatenated."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int, drop_rate: float,
                 ibn_ratio: float | None = None) -> None:
        super().__init__()
        self.norm1: nn.Module = (
            IBN(in_features, ibn_ratio, in_first=False) if ibn_ratio is not None else nn.BatchNorm2d(in_features)
        )
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return torch.cat((x, new), dim=1)


class DenseBlock(nn.Sequential):
    def __init__(self, num_layers: int, in_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float, ibn_ratio: float | None) -> None:
        super().__init__()
        for i in range(num_layers):
            ratio = ibn_ratio if (ibn_ratio is not None and i % IBN_EVERY == 0) else None
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_features + i * growth_rate, growth_rate, bn_size, drop_rate, ratio))


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_features, out_features, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """DenseNet-BC with optional IBN-a.

    Args:
        growth_rate, num_init_features, block_config, bn_size, drop_rate: as torchvision.
        variant: ``"baseline"`` or ``"a"`` / ``"ibn_a"``.
        ibn_ratio: IN share of the IBN layers (default 0.4, the authors').
        ibn_groups: dense blocks (1..4) with IBN layers (default 1-3).
    """

    head_name = "classifier"

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        variant: str = "baseline",
        ibn_ratio: float | None = None,
        ibn_groups: Sequence[int] | int | None = None,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        v = variant.removeprefix("ibn_")
        if v not in ("baseline", "a"):
            raise VariantError(f"DenseNet has variants 'baseline' and 'ibn_a', got {variant!r}")
        if v == "baseline" and (ibn_ratio is not None or ibn_groups is not None):
            raise VariantError("ibn_ratio / ibn_groups have no effect on the baseline DenseNet")
        if ibn_ratio is not None and not 0.0 <= float(ibn_ratio) <= 1.0:
            raise VariantError(f"ibn_ratio must be in [0, 1] for DenseNet, got {ibn_ratio!r}")
        ratio = float(ibn_ratio) if ibn_ratio is not None else DEFAULT_IBN_RATIO
        groups = _groups(ibn_groups) if ibn_groups is not None else (1, 2, 3)
        self.variant = "baseline" if v == "baseline" else "ibn_a"

        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        n = num_init_features
        for i, num_layers in enumerate(block_config):
            r = ratio if (v == "a" and i + 1 in groups) else None
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(num_layers, n, bn_size, growth_rate, drop_rate, r))
            n += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.num_features = n
        self.classifier: nn.Module = nn.Linear(n, num_classes) if num_classes > 0 else nn.Identity()

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map before pooling (after ``norm5`` and its ReLU)."""
        return F.relu(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1))

    # torchvision's released DenseNet files name layers 'norm.1' where the modules are 'norm1'.
    _OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")

    def remap_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for k, t in state_dict.items():
            m = self._OLD_KEY.match(k)
            out[m.group(1) + m.group(2) if m else k] = t
        return out


def _register() -> None:
    for depth, (growth, init, blocks) in DENSENET_CFGS.items():
        for variant in ("baseline", "a"):
            name = f"densenet{depth}" + ("" if variant == "baseline" else "_ibn_a")

            def fn(num_classes: int = 1000, _g: int = growth, _i: int = init, _b: tuple[int, ...] = blocks,
                   _v: str = variant, **kw: Any) -> DenseNet:
                return DenseNet(_g, _b, _i, num_classes=num_classes, variant=_v, **kw)

            register_released(
                fn, name=name, family="densenet", backbone=f"densenet{depth}",
                variant="baseline" if variant == "baseline" else "ibn_a",
                doc=f"DenseNet-{depth}, " + (
                    "plain BN (torchvision keys)." if variant == "baseline"
                    else "IBN-a: IBN (ratio 0.4) at norm1 of every third dense layer of blocks 1-3 (authors' keys)."),
            )


_register()

"""ResNeXt-50/101/152 (32x4d): :class:`~dgbench.models.resnet.ResNet` with grouped bottlenecks.

The IBN-a names are the authors' (``resnext101_ibn_a``, aliased ``resnext101_32x4d_ibn_a``); the
baselines are ``resnext{50,101,152}_32x4d`` with torchvision's keys. Only IBN-a is registered
(as released), but the same ``ibn_ratio`` / ``ibn_groups`` knobs apply.
"""
from __future__ import annotations

from typing import Any

from .resnet import Bottleneck, ResNet, RESNET_LAYERS
from .registry import register_model
from .pretrained import released_weights

__all__ = ["resnext"]

CARDINALITY, BASE_WIDTH = 32, 4


def resnext(depth: int, num_classes: int = 1000, variant: str = "baseline", **kwargs: Any) -> ResNet:
    """ResNeXt-``depth`` 32x4d (cardinality 32, 4 channels per group at the first stage)."""
    _, layers = RESNET_LAYERS[depth]
    return ResNet(Bottleneck, layers, num_classes=num_classes, variant=variant,
                  groups=CARDINALITY, width_per_group=BASE_WIDTH, **kwargs)


def _register() -> None:
    for depth in (50, 101, 152):
        for variant in ("baseline", "a"):
            base = f"resnext{depth}_32x4d"
            name = base if variant == "baseline" else f"resnext{depth}_ibn_a"

            def fn(num_classes: int = 1000, _d: int = depth, _v: str = variant, **kw: Any) -> ResNet:
                return resnext(_d, num_classes, _v, **kw)

            fn.__name__ = fn.__qualname__ = name
            fn.__doc__ = (
                f"ResNeXt-{depth} 32x4d, "
                + ("plain BN (torchvision keys)." if variant == "baseline"
                   else "IBN-a: half-IN IBN layer at bn1 of every block in groups 1-3 (authors' keys).")
            )
            register_model(
                family="resnext", backbone=base,
                variant="baseline" if variant == "baseline" else "ibn_a",
                weights=released_weights(name),
                aliases=() if variant == "baseline" else (f"{base}_ibn_a",),
                name=name,
            )(fn)


_register()

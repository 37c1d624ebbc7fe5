"""SE-ResNet-50/101/152: :class:`~dgbench.models.resnet.ResNet` with an SE layer in every block.

The SE layer (reduction 16, no biases: keys ``se.fc.0.weight`` / ``se.fc.2.weight``) gates the
output of the block's last norm before the addition, as in the authors' release. Baselines are
``se_resnet{50,101,152}`` (plain BN, same keys minus the IBN split); IBN-a is
``se_resnet{50,101,152}_ibn_a``.
"""
from __future__ import annotations

from typing import Any

from .resnet import RESNET_LAYERS, ResNet, SELayer
from .registry import register_released

__all__ = ["SELayer", "se_resnet"]

SE_REDUCTION = 16


def se_resnet(depth: int, num_classes: int = 1000, variant: str = "baseline", **kwargs: Any) -> ResNet:
    block, layers = RESNET_LAYERS[depth]
    kwargs.setdefault("se_reduction", SE_REDUCTION)
    return ResNet(block, layers, num_classes=num_classes, variant=variant, **kwargs)


def _register() -> None:
    for depth in (50, 101, 152):
        for variant in ("baseline", "a"):
            name = f"se_resnet{depth}" + ("" if variant == "baseline" else "_ibn_a")

            def fn(num_classes: int = 1000, _d: int = depth, _v: str = variant, **kw: Any) -> ResNet:
                return se_resnet(_d, num_classes, _v, **kw)

            register_released(
                fn, name=name, family="se_resnet", backbone=f"se_resnet{depth}",
                variant="baseline" if variant == "baseline" else "ibn_a",
                doc=f"SE-ResNet-{depth} (SE reduction 16), " + (
                    "plain BN." if variant == "baseline"
                    else "IBN-a: half-IN IBN layer at bn1 of every block in groups 1-3 (authors' keys)."),
            )


_register()

"""The segmentation datasets in the dataset registry, so cross-domain pairs can name them.

Builders take the registry's common signature ``(root, *, split, preprocess, **options)``; the
preprocessing of a segmentation evaluation is the inference mode, not a resize, so it is ignored.
"""
from __future__ import annotations

from typing import Any

from .base import register_dataset
from .seg_base import QuirkPolicy


@register_dataset("cityscapes", task="segmentation")
def build_cityscapes(root: Any = None, *, split: str = "val", preprocess: Any = None, **options: Any) -> Any:
    from .cityscapes import CityscapesSegmentation

    return CityscapesSegmentation(root, split, **options)


@register_dataset("gta5", task="segmentation")
def build_gta5(root: Any = None, *, split: str = "val", preprocess: Any = None, split_file: Any = None,
               size_mismatch: str = "error", **options: Any) -> Any:
    """``size_mismatch``: the policy for label maps whose size differs from their image."""
    from .gta5 import GTA5Segmentation

    return GTA5Segmentation(root, split, split_file=split_file, policy=QuirkPolicy(size_mismatch=size_mismatch), **options)


def _scenes(domain: str) -> Any:
    def build(root: Any = None, *, split: str = "test", preprocess: Any = None, **options: Any) -> Any:
        from ..errors import DgbenchError
        from .digit_scenes import DigitScenes

        if root is not None:
            raise DgbenchError(f"{domain!r} is built into dgbench and takes no data root (got {root})")
        return DigitScenes(domain, split, **options)

    return build


register_dataset("digit-scenes", task="segmentation")(_scenes("digit-scenes"))
register_dataset("typeset-digit-scenes", task="segmentation")(_scenes("typeset-digit-scenes"))

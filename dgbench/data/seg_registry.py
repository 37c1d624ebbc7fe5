"""The segmentation datasets in the dataset registry, so cross-domain pairs and training name them.

(The built-in digit scenes register themselves in :mod:`dgbench.builtin.digit_scenes`.)

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
               size_mismatch: str = "error", policy: QuirkPolicy | None = None, **options: Any) -> Any:
    """``size_mismatch``: the policy for label maps whose size differs from their image; ``policy``:
    a whole :class:`QuirkPolicy` instead (training passes its own)."""
    from .gta5 import GTA5Segmentation

    policy = policy or QuirkPolicy(size_mismatch=size_mismatch)
    return GTA5Segmentation(root, split, split_file=split_file, policy=policy, **options)


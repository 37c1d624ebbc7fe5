"""Scoring a 1000-class ImageNet model on a dataset of fewer classes, the standard way.

ImageNet-R and ImageNet-A hold 200 of ImageNet's classes: their papers (and timm, after its
issue #176) restrict the model's logits to those 200 before the arg-max, so a prediction is
always one of the dataset's classes. ObjectNet's classes each pool one or more ImageNet classes:
a class's logit is the largest of its ImageNet classes' logits (the arg-max over the pooled
ImageNet classes, mapped to its ObjectNet class). :func:`pooled_logits` does both; labels are
positions in the class map.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def class_index(class_map: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[classes, widest group]`` indices; a short group repeats its first index (max is unchanged)."""
    if not class_map or any(len(g) == 0 for g in class_map):
        raise ValueError("a class map needs at least one ImageNet class per dataset class")
    width = max(len(g) for g in class_map)
    return torch.tensor([list(g) + [g[0]] * (width - len(g)) for g in class_map], dtype=torch.long)


def pooled_logits(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[batch, classes]``: for each dataset class the largest logit among its ImageNet classes."""
    return logits[:, index.to(logits.device)].amax(dim=-1)


class ClassMapModel(nn.Module):
    """A classifier whose output is restricted/pooled to a dataset's classes (see the module docstring).

    It keeps the wrapped model's preprocessing config and names, so the engine and the records
    treat it as the model it wraps."""

    def __init__(self, model: nn.Module, class_map: Sequence[Sequence[int]]):
        super().__init__()
        self.model = model
        self.register_buffer("index", class_index(class_map), persistent=False)
        for attr in ("pretrained_cfg", "dgbench_name", "variant_kwargs", "weights_sha256"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: torch.Tensor) -> Any:
        return pooled_logits(self.model(x), self.index)

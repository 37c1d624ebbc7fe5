"""Shape bias on cue-conflict images (Geirhos et al. 2019): decisions, their counts, the ratios.

A cue-conflict image has a *shape* class and a *texture* class. A model's decision is one of the
dataset's categories, read from its logits through a :class:`CategoryMap` (a property of the
dataset: the built-in digits map each of the 10 outputs to itself; the official set maps 16
categories to sets of ImageNet's 1000 classes). Counted over the images whose shape and texture
classes differ (the others are *excluded*, as model-vs-human excludes them):

* ``shape``: decisions equal to the shape class; ``texture``: equal to the texture class;
  ``other``: neither;
* shape bias = shape / (shape + texture) (undefined, NaN, when both are 0);
* cue accuracy = (shape + texture) / (shape + texture + other): how often the decision is one
  of the two cues at all.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CategoryMap:
    """The categories a decision is made among, each a set of the model's output classes.

    ``members[i]`` are the output indices of category ``names[i]``. The decision is the category
    with the highest *mean* softmax probability over its members (model-vs-human's
    ``ImageNetProbabilitiesTo16ClassesMapping`` with its default ``np.mean``); the first category
    in ``names`` order wins a tie, as there. With one member per category that is the argmax.
    """

    names: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]
    num_outputs: int

    def __post_init__(self) -> None:
        if len(self.names) != len(self.members) or not self.names:
            raise ValueError("a category map needs one non-empty member list per category name")
        for name, idx in zip(self.names, self.members):
            if not idx or min(idx) < 0 or max(idx) >= self.num_outputs:
                raise ValueError(f"category {name!r}: members {list(idx)} outside 0..{self.num_outputs - 1}")

    @classmethod
    def identity(cls, names: Sequence[str]) -> "CategoryMap":
        """Output ``i`` is category ``names[i]`` (a model trained on the categories themselves)."""
        return cls(tuple(names), tuple((i,) for i in range(len(names))), len(names))

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Category indices (int64 ``[N]``) for logits ``[N, num_outputs]``."""
        if logits.ndim != 2 or logits.shape[1] != self.num_outputs:
            raise ValueError(f"logits of shape {tuple(logits.shape)}; this category map needs [N, {self.num_outputs}]")
        probs = torch.softmax(logits.double(), dim=1)  # float64: means of many tiny probabilities
        means = torch.stack([probs[:, list(idx)].mean(dim=1) for idx in self.members], dim=1)
        return means.argmax(dim=1)  # torch returns the first maximal index: the first category wins a tie


@dataclass(frozen=True)
class DecisionCounts:
    """Integer counts of one model's decisions on a cue-conflict set (see the module docstring)."""

    shape: int
    texture: int
    other: int
    excluded: int  # images whose shape and texture classes are the same

    @property
    def conflict(self) -> int:
        return self.shape + self.texture + self.other

    def shape_bias(self) -> float:
        cue = self.shape + self.texture
        return self.shape / cue if cue else math.nan

    def cue_accuracy(self) -> float:
        return (self.shape + self.texture) / self.conflict if self.conflict else math.nan

    def as_dict(self) -> dict[str, int]:
        return {"shape": self.shape, "texture": self.texture, "other": self.other, "excluded": self.excluded}


def count_decisions(decisions: Sequence[int], shape: Sequence[int], texture: Sequence[int]) -> DecisionCounts:
    """Count decisions against each image's shape and texture category (all in category indices)."""
    if not len(decisions) == len(shape) == len(texture):
        raise ValueError(f"{len(decisions)} decisions for {len(shape)} shape and {len(texture)} texture labels")
    n_shape = n_texture = n_other = n_excluded = 0
    for d, s, t in zip(decisions, shape, texture):
        if s == t:
            n_excluded += 1
        elif d == s:
            n_shape += 1
        elif d == t:
            n_texture += 1
        else:
            n_other += 1
    return DecisionCounts(n_shape, n_texture, n_other, n_excluded)

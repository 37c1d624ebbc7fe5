"""Exact top-k counting for classification.

Counts are integers (summed over batches, and over ranks with an all-reduce), so an error rate is
the same whatever the batch size or world size: no padded duplicates, no dropped last batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """How many rows of ``logits [N, C]`` have ``target`` among their ``k`` highest scores, per k.

    ``k`` larger than the number of classes counts every row (top-5 of a 3-class problem is 100 %).
    """
    if logits.ndim != 2 or target.ndim != 1 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"expected logits [N, C] and target [N], got {tuple(logits.shape)} and {tuple(target.shape)}")
    if logits.shape[0] == 0:
        return {k: 0 for k in ks}
    return dict(zip(ks, topk_hits(logits, target, ks).tolist()))


def topk_hits(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """:func:`topk_correct` as an int64 tensor ``[len(ks)]`` on the logits' device (no host sync)."""
    return topk_rows(logits, target, ks)[1].sum(dim=0)


def topk_rows(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the predicted class ``[N]`` and whether ``target`` is among the top k ``[N, len(ks)]`` (bool)."""
    c = logits.shape[1]
    maxk = min(max(ks), c)
    pred = logits.float().topk(maxk, dim=1).indices  # [N, maxk]
    hit = pred.eq(target.to(pred.device).view(-1, 1))
    return pred[:, 0], torch.stack([hit[:, : min(k, c)].any(dim=1) for k in ks], dim=1)


@dataclass
class TopKCounts:
    """Running integer counts: samples seen and correct at each k."""

    ks: tuple[int, ...] = (1, 5)
    n: int = 0
    correct: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in self.ks:
            self.correct.setdefault(k, 0)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        for k, v in topk_correct(logits, target, self.ks).items():
            self.correct[k] += v
        self.n += int(target.shape[0])

    def as_tensor(self) -> torch.Tensor:
        """``[n, correct@k...]`` as int64 (what the distributed all-reduce sums)."""
        return torch.tensor([self.n] + [self.correct[k] for k in self.ks], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> "TopKCounts":
        vals = [int(v) for v in t.tolist()]
        return cls(ks=ks, n=vals[0], correct=dict(zip(ks, vals[1:])))

    def errors(self) -> dict[str, float]:
        """Top-k error in percent: ``{"top1_err": .., "top5_err": ..}``."""
        if self.n == 0:
            return {f"top{k}_err": float("nan") for k in self.ks}
        return {f"top{k}_err": 100.0 * (1.0 - self.correct[k] / self.n) for k in self.ks}

"""The one metric catalogue: every metric a record can carry, with its title, unit and direction.

Tables, leaderboards, plots, the regression check and the leaderboard site read metric facts from
here and nowhere else. Which metrics a kind's tables show and its leaderboards publish is its
:class:`~.kinds.ResultKind`'s to say; a kind added later registers its metrics with it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass



@dataclass(frozen=True)
class Metric:
    name: str  # the key in a record's ``metrics``
    title: str  # what a table header or axis says
    unit: str  # "%" (percent; drops in percentage points) or a plain unit such as "nats"
    higher_is_better: bool

    @property
    def degradation_sign(self) -> int:
        """+1 when a rise is a loss (errors), -1 when a fall is (accuracy, mIoU)."""
        return -1 if self.higher_is_better else 1


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("top1_err", "top-1 error", "%", False),
    Metric("top5_err", "top-5 error", "%", False),
    Metric("top1_acc", "top-1 accuracy", "%", True),
    Metric("top5_acc", "top-5 accuracy", "%", True),
    Metric("miou", "mIoU", "%", True),
    Metric("pixel_acc", "pixel accuracy", "%", True),
    Metric("mean_acc", "mean class accuracy", "%", True),
    # A distance between two domains' features, not a score: lower means the layer is more
    # invariant to the pair's difference, which is the aim for appearance pairs only.
    Metric("divergence", "feature divergence", "nats", False),
)}

def register_metric(metric: Metric) -> Metric:
    """Add a metric (a new protocol kind's); re-registering the same definition is a no-op."""
    old = METRICS.get(metric.name)
    if old is not None and old != metric:
        raise ValueError(f"metric {metric.name!r} is already defined differently: {old}")
    METRICS[metric.name] = metric
    return metric


def higher_is_better(name: str) -> bool:
    """Unknown metrics count as losses when they rise (errors), the safe reading for a drop."""
    m = METRICS.get(name)
    return bool(m and m.higher_is_better)


def degradation_sign(name: str) -> int:
    return -1 if higher_is_better(name) else 1


def title(name: str) -> str:
    m = METRICS.get(name)
    return m.title if m else name


def task_of(metrics: Iterable[str]) -> str:
    """The task whose metrics these are (segmentation when any segmentation metric is among them)."""
    return "segmentation" if {"miou", "pixel_acc"} & set(metrics) else "classification"


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` in catalogue order (unknown metrics last, as given)."""
    names = list(dict.fromkeys(names))
    return [m for m in METRICS if m in names] + [m for m in names if m not in METRICS]

"""The one metric catalogue: every metric a record can carry, with its title, unit and direction.

Tables, leaderboards, plots, the regression check and the leaderboard site read metric facts from
here and nowhere else. ``PUBLISHED`` says which metrics a result of a protocol kind and task shows
by default and publishes, in column order. A protocol kind added later (divergence, corruptions,
fine-tuning) adds its metrics and its ``(kind, task)`` row here.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownNameError


@dataclass(frozen=True)
class Metric:
    name: str  # the key in a record's ``metrics``
    title: str  # what a table header or axis says
    unit: str  # "%" (percent; drops in percentage points) or a plain unit such as "nats"
    higher_is_better: bool
    aliases: tuple[str, ...] = ()  # what users may type for it (``--metric top1``)

    @property
    def degradation_sign(self) -> int:
        """+1 when a rise is a loss (errors), -1 when a fall is (accuracy, mIoU)."""
        return -1 if self.higher_is_better else 1


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("top1_err", "top-1 error", "%", False, ("top1",)),
    Metric("top5_err", "top-5 error", "%", False, ("top5",)),
    Metric("top1_acc", "top-1 accuracy", "%", True, ("acc",)),
    Metric("top5_acc", "top-5 accuracy", "%", True),
    Metric("miou", "mIoU", "%", True),
    Metric("pixel_acc", "pixel accuracy", "%", True, ("pixacc",)),
    Metric("mean_acc", "mean class accuracy", "%", True),
    # A distance between two domains' features, not a score: lower means the layer is more
    # invariant to the pair's difference, which is the aim for appearance pairs only.
    Metric("divergence", "feature divergence", "nats", False, ("kl", "div")),
)}

# (protocol kind, task) -> the metrics a table shows and a leaderboard publishes, in order.
PUBLISHED: dict[tuple[str, str], tuple[str, ...]] = {
    ("appearance", "classification"): ("top1_err", "top5_err"),
    ("cross-domain", "classification"): ("top1_acc", "top1_err"),
    ("cross-domain", "segmentation"): ("miou", "pixel_acc"),
    ("divergence", "classification"): ("divergence",),
}


def register_metric(metric: Metric) -> Metric:
    """Add a metric (a new protocol kind's); re-registering the same definition is a no-op."""
    old = METRICS.get(metric.name)
    if old is not None and old != metric:
        raise ValueError(f"metric {metric.name!r} is already defined differently: {old}")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise UnknownNameError("metric", name, METRICS)
    return METRICS[name]


def higher_is_better(name: str) -> bool:
    """Unknown metrics count as losses when they rise (errors), the safe reading for a drop."""
    m = METRICS.get(name)
    return bool(m and m.higher_is_better)


def degradation_sign(name: str) -> int:
    return -1 if higher_is_better(name) else 1


def title(name: str) -> str:
    m = METRICS.get(name)
    return m.title if m else name


def published(kind: str, task: str) -> tuple[str, ...]:
    return PUBLISHED.get((kind, task), ())


def kind_metrics(kind: str) -> tuple[str, ...]:
    """Every metric any task of ``kind`` publishes, in catalogue order (tables pick from these)."""
    names = {m for (k, _), ms in PUBLISHED.items() if k == kind for m in ms}
    return tuple(m for m in METRICS if m in names)


def resolve_metric(text: str, kind: str) -> str:
    """A user's ``--metric`` (name or alias) -> the record's metric name, among ``kind``'s metrics."""
    allowed = kind_metrics(kind) or tuple(METRICS)
    for name in allowed:
        if text == name or text in METRICS[name].aliases:
            return name
    # Appearance reads errors: ``top1`` there means top-1 error, in cross-domain top-1 accuracy.
    for name in allowed:
        if name.startswith(text + "_"):
            return name
    raise UnknownNameError(f"{kind} metric", text, [*allowed, *(a for n in allowed for a in METRICS[n].aliases)])

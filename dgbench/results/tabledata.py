"""A result table as strings (:class:`TableData`), the one thing every renderer reads, and how a
number is printed in one; built by :mod:`.tables` and by kinds of other shapes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import DgbenchError


class NoResultsError(DgbenchError):
    """Nothing stored matches what a table, leaderboard or plot was asked to show."""


@dataclass
class TableData:
    """A table as strings: the one thing every renderer reads."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    sources: list[str] = field(default_factory=list)  # per row: "dgbench" or "paper"
    caption: str = ""


def fmt_stat(mean: float, se: float = math.nan, decimals: int = 2) -> str:
    """``25.54`` or ``25.54 ± 0.12`` (``decimals`` after the point); an en dash for a missing number."""
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{mean:.{decimals}f}"
    return text if se is None or math.isnan(se) else f"{text} ± {se:.{decimals}f}"

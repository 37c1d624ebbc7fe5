"""The leaderboard site's content, as data: a page (:class:`Board`) of tables (:class:`Grid`) of
rows and cells, built by :mod:`.site` (and by kinds of other shapes) and rendered by
:mod:`.site_pages`."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import catalogue
from .frame import MEASURED

PAPER = "paper"


@dataclass(frozen=True)
class Cell:
    value: str  # the metric exactly as the CSV prints it
    drop: str  # its drop ("" on reference cells)
    se: str  # its standard error ("" for one run)
    n: int | None  # runs averaged (None for numbers dgbench did not measure)
    mark: str = ""  # a word after the number (divergence: "IN" where the model has IN there)
    title: str = ""  # a tooltip (a missing mCE: why; a measured error: its 95 % intervals)
    shade: str = ""  # a background colour of its own (a heat map), instead of the drop's

    @property
    def drop_value(self) -> float | None:
        return float(self.drop) if self.drop else None


@dataclass
class Row:
    label: str  # the model as tables name it: ``small_resnet`` or ``m (ibn_ratio=0.25)``
    source: str  # ``dgbench`` or ``paper``
    train: str  # what splits a model's rows (cross-domain: the training domain); appearance: ""
    cells: list[Cell | None]
    runs: list[dict] | None  # provenance: the runs behind the row's cells; None = not recorded
    note: str = ""  # paper rows: which table of the paper
    csv: str = ""  # the CSV the row's numbers come from (a link, relative to the page)


@dataclass
class Grid:
    """One metric of one leaderboard in the paper's shape: models (x train domain) x conditions."""

    metric: str
    kind: str
    conditions: list[str]  # shifts (reference first), test domains, fractions, layers
    rows: list[Row]
    reference: str = ""
    columns: list[str] = field(default_factory=list)  # the conditions' headers (default: themselves)
    row_head: str = ""  # header of the column that splits a model's rows ("" = none)
    caption: str = ""
    heading: str = ""  # the section's heading (default: the metric's title and unit)
    unit: str = "%"

    @property
    def title(self) -> str:
        return catalogue.title(self.metric)

    @property
    def headers(self) -> list[str]:
        return self.columns or self.conditions

    @property
    def higher_is_better(self) -> bool:
        return catalogue.higher_is_better(self.metric)

    @property
    def max_drop(self) -> float:
        drops = [abs(c.drop_value) for r in self.rows for c in r.cells if c and c.drop_value is not None]
        return max(drops, default=0.0)


@dataclass
class Board:
    stem: str
    dataset: str
    protocol: str
    kind: str
    task: str
    metrics: tuple[str, ...]
    csv_name: str
    grids: list[Grid]
    plots: list[tuple[str, bytes]] = field(default_factory=list)  # (metric, PNG)
    provenance: bool = False  # a sidecar was found
    paper_csvs: list[str] = field(default_factory=list)
    summaries: list[Grid] = field(default_factory=list)  # shown before the grids (corruptions: per family)
    after: list[Grid] = field(default_factory=list)  # shown after the grids (error consistency)
    conditions: str = ""  # what the index says the columns are ("5 shifts")
    plot_note: str = ""  # what the plots show ("{title} drop per model (points)" unless given)

    @property
    def models(self) -> int:
        return len({r.label for g in self.grids[:1] for r in g.rows if r.source == MEASURED})

    @property
    def page(self) -> str:
        return f"{self.stem}.html"

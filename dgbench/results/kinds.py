"""Result kinds: what the generic results modules need to know about one protocol kind's results.

Every record names its ``kind`` (``appearance``, ``cross-domain``, ``finetune``, ``divergence``
or a plugin's); one :class:`ResultKind` per kind says what its conditions are, which metrics
its tables show and its leaderboards publish, and how its table, leaderboard, check, plot and
site page are shaped. :mod:`.frame`, :mod:`.tables`, :mod:`.leaderboard`, :mod:`.check`,
:mod:`.plot`, :mod:`.site` and :mod:`.catalogue` read these facts from here and branch on no
kind name. A protocol kind adds its results by calling :func:`register_kind` (see
``tests/test_result_kinds.py`` for a toy kind added from outside the package).

Most kinds are *metric kinds*: one summary row per (model, condition), seeds aggregated, a
leaderboard of percentages with the schema :meth:`ResultKind.schema`. A kind whose results have
another shape (divergence: a row per probed layer, in nats) sets ``hooks``, the functions that
replace the generic summary, table, leaderboard, check, plot and page for it.

Records written before records named their kind are read by :func:`infer_kind`: once, at load.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnknownNameError
from . import catalogue


@dataclass(frozen=True)
class KindHooks:
    """The functions of a kind whose results are not one summary row per (model, condition).

    ``split(records)`` -> (the other records, this kind's records frame); ``tables(records frame)`` -> TableData
    list; ``publish(records frame, out dir)`` -> paths written; ``read(path, csv reader)`` ->
    validated leaderboard frame; ``check(baseline, measured, tolerances)`` -> CheckResult;
    ``panels(records frame)`` -> drawing functions ``f(ax)``; ``board(csv path)`` -> site Board.
    """

    tables: Callable[..., list]
    publish: Callable[..., list]
    read: Callable[..., Any]
    check: Callable[..., Any]
    panels: Callable[..., list]
    board: Callable[..., Any]
    header: list[str]
    split: Callable[..., tuple]


@dataclass(frozen=True)
class ResultKind:
    """One protocol kind's results (see the module docstring).

    ``conditions``: the leaderboard columns that name a condition within a model's rows, in order;
    ``column``: the condition a table has one column per (the others split a model's rows, under
    the header ``row_head``); ``published`` / ``shown``: per task, the metrics a leaderboard
    publishes (column order) / a table shows by default; ``aliases``: what users may type for a
    metric; ``column_title``: a condition value as a column header; ``drop_from``: what a drop
    is measured from, for captions ("" when the kind has no drops); ``describe``: what a page
    says of its rows and columns; ``infer``: recognizes the kind's records that predate the
    ``kind`` field (None: records of this kind always name it); ``protocol_order`` /
    ``column_key`` / ``square``: how a page orders its columns.
    """

    name: str
    conditions: tuple[str, ...]
    column: str
    published: Mapping[str, tuple[str, ...]]
    shown: Mapping[str, tuple[str, ...]]
    aliases: Mapping[str, str] = field(default_factory=dict)
    row_head: str = ""
    column_title: Callable[[str], str] = str
    drop_from: str = ""
    describe: str = ""
    infer: Callable[[Mapping[str, Any]], bool] | None = None
    protocol_order: bool = False  # columns in the order the protocol's spec lists them (shifts)
    column_key: Callable[[str], Any] | None = None  # else: this sort key (None: natural order)
    square: bool = False  # the columns and the row splits range over the same values (train x test)
    table: str = ""  # "module:function" of its table builder (see tables.appearance_table); "" = Table 1's shape
    page_per_metric: bool = False  # its Markdown page shows one table per published metric
    plot_curve: bool = False  # plots draw the metric against the column's value (else: bars of drops)
    metrics: tuple[catalogue.Metric, ...] = ()  # metrics the kind adds to the catalogue
    panels: str = ""  # "module:function" (summary group, title, metric) -> drawing functions; "" = bars of drops
    plot_note: str = ""  # the site's caption of its figure ("{title}": the metric's); "" = "{title} drop per model"
    hooks: KindHooks | None = None

    @property
    def split_rows(self) -> tuple[str, ...]:
        """The condition columns that split a model's rows (all but the table's column)."""
        return tuple(c for c in self.conditions if c != self.column)

    def schema(self, task: str) -> list[str]:
        """The exact header of this kind's leaderboard for ``task`` (metric kinds)."""
        if self.hooks is not None:
            return list(self.hooks.header)
        metrics = self.published[task]
        return (["dataset", "protocol", "task", "model", "model_kwargs", *self.conditions, "reference", "n_runs"]
                + [f"{m}_pct" for m in metrics] + [f"{m}_drop_pct" for m in metrics]
                + [f"{m}_se_pct" for m in metrics] + ["source", "note"])

    def schemas(self) -> dict[tuple[str, str], list[str]]:
        tasks = ["classification"] if self.hooks is not None else list(self.published)
        return {(self.name, t): self.schema(t) for t in tasks}


_KINDS: dict[str, ResultKind] = {}
_BUILTIN_LOADED = False


def register_kind(kind: ResultKind) -> ResultKind:
    """Add a result kind (a new protocol kind's); its metrics join the catalogue."""
    for m in kind.metrics:
        catalogue.register_metric(m)
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind (tests that register a toy kind clean up with it)."""
    _KINDS.pop(name, None)


def _builtin() -> None:
    """Register the built-in kinds on first use (divergence's lives in results.divergence)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    for kind in BUILTIN:
        _KINDS.setdefault(kind.name, kind)
    for target in BUILTIN_ELSEWHERE:  # by name, as protocol kinds are: no import cycle with them
        kind = resolve(target)
        _KINDS.setdefault(kind.name, kind)


def get_kind(name: str) -> ResultKind:
    _builtin()
    if name not in _KINDS:
        raise UnknownNameError("result kind", name, _KINDS)
    return _KINDS[name]


def all_kinds() -> list[ResultKind]:
    _builtin()
    return list(_KINDS.values())


def kind_names() -> list[str]:
    return [k.name for k in all_kinds()]


def infer_kind(rec: Mapping[str, Any]) -> str:
    """The kind a record names; for a record that predates the field, the first kind whose
    ``infer`` recognizes it (fine-tune before cross-domain: both have domains), else appearance."""
    if rec.get("kind"):
        return str(rec["kind"])
    for kind in all_kinds():
        if kind.infer is not None and kind.infer(rec):
            return kind.name
    return "appearance"


def resolve(target: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` reference names (imported on first use)."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def shown_metrics(kind: str, available: Iterable[str]) -> list[str]:
    """The metrics a table of ``kind`` shows by default among ``available``."""
    available = catalogue.ordered(available)
    chosen = [m for m in get_kind(kind).shown.get(catalogue.task_of(available), ()) if m in available]
    return chosen or available[:1]


def resolve_metric(text: str, kind: str, available: Iterable[str]) -> str:
    """A user's ``--metric`` (name or alias) -> the record's metric name, among ``available``."""
    available = catalogue.ordered(available)
    aliases = get_kind(kind).aliases
    name = aliases.get(text.lower(), text.lower())
    if name not in catalogue.METRICS or (available and name not in available):
        known = [a for a, m in aliases.items() if m in available] + available
        raise UnknownNameError(f"metric for {kind} tables", text, known or list(catalogue.METRICS))
    return name


def fraction_title(fraction: str) -> str:
    """A fine-tune column: ``source only`` for 0, else the percentage (``10%``)."""
    f = float(fraction)
    return "source only" if f == 0 else f"{f * 100:g}%"


# Built-in kinds whose ResultKind lives with their own results module ("module:attribute").
BUILTIN_ELSEWHERE = ("dgbench.results.divergence:RESULT_KIND", "dgbench.results.natural:RESULT_KIND",
                     "dgbench.results.shape_bias:RESULT_KIND", "dgbench.results.leave_one_out:RESULT_KIND")

BUILTIN = (
    ResultKind(
        "finetune", ("train_domain", "test_domain", "fraction"), "fraction",
        published={"segmentation": ("miou", "pixel_acc")},
        shown={"segmentation": ("miou",)},  # Table 8 prints mIoU
        aliases={"pixacc": "pixel_acc"}, row_head="train → test", column_title=fraction_title, column_key=float,
        table="dgbench.results.tables:finetune_table", plot_curve=True,
        describe="rows: model, source → target domain; columns: fraction of the target's labelled "
                 "train images (source only: no fine-tuning)",
        infer=lambda rec: rec.get("fraction") is not None),
    ResultKind(
        "cross-domain", ("train_domain", "test_domain"), "test_domain",
        published={"classification": ("top1_acc", "top1_err"), "segmentation": ("miou", "pixel_acc")},
        shown={"classification": ("top1_acc",), "segmentation": ("miou", "pixel_acc")},
        aliases={"top1": "top1_acc", "acc": "top1_acc", "pixacc": "pixel_acc"}, row_head="train \\ test",
        drop_from="the in-domain cell of the row", describe="rows: model and training domain; columns: test domain",
        infer=lambda rec: rec.get("train_domain") is not None or rec.get("test_domain") is not None, square=True,
        table="dgbench.results.tables:cross_domain_table"),
    ResultKind(
        "appearance", ("shift",), "shift",
        published={"classification": ("top1_err", "top5_err")},
        shown={"classification": ("top1_err", "top5_err")},
        aliases={"top1": "top1_err", "top5": "top5_err"}, drop_from="the reference column",
        describe="rows: models; columns: shifts", protocol_order=True, page_per_metric=True),
)

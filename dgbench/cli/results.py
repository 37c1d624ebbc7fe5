"""Commands over stored results: ``table``, ``leaderboard publish``, ``check`` and ``plot``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import data_dir, results_dir
from ..errors import DgbenchError, UnknownNameError
from ._app import app, console

leaderboard_app = typer.Typer(help="Published leaderboards (fixed-schema CSV + Markdown, and a static site).",
                              no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")

_RESULTS_HELP = "Results directory (default: $DGBENCH_RESULTS, else ./results)."
_KNOWN_PROTOCOLS = ("appearance", "appearance-lite", "cross-domain", "corruptions", "corruptions-lite", "corruptions-extra")
DEFAULT_BASELINE = "digits-appearance.csv"  # the built-in benchmark's leaderboard, what CI guards


def _load(results: Optional[Path], protocol: Optional[str], dataset: Optional[str], *,
          allow_empty: bool = False):
    """The stored records for the options, as a records frame; bad names are errors."""
    return _load_with_records(results, protocol, dataset, allow_empty=allow_empty)[0]


def _load_with_records(results: Optional[Path], protocol: Optional[str], dataset: Optional[str], *,
                       allow_empty: bool = False):
    """:func:`_load`'s frame, and every stored record by key (the store read once: what intervals,
    comparisons and the site read besides the frame)."""
    from ..results.frame import records_to_frame, table_datasets
    from ..results.store import ResultStore
    from ..results.tables import NoResultsError

    root = results_dir(results)
    records = {r["key"]: r for r in ResultStore(root).iter_records()}
    frame = records_to_frame(records.values())
    stored = sorted(set(frame["protocol"].dropna()))
    if protocol is not None:
        known = stored + _known_protocols()
        if protocol not in known:
            raise UnknownNameError("protocol", protocol, known)
        frame = frame[frame["protocol"] == protocol]
    if dataset is not None:
        # A cross-domain pair is named as a whole or by either of its domains.
        labels, covers = table_datasets(frame)
        known = sorted(set(labels) | {n for names in covers.values() for n in names})
        if dataset not in known and not (allow_empty and frame.empty):
            raise UnknownNameError(f"dataset in {root}", dataset, known)
        frame = frame[[dataset in covers[label] for label in labels]]
    if frame.empty and not allow_empty:
        what = f"protocol {protocol!r}" if protocol else "any protocol"
        raise NoResultsError(f"no stored results for {what} in {root} "
                             "(run one first, e.g. `dgbench run --model ibn_a --protocol appearance`)")
    return frame, records


def _known_protocols() -> list[str]:
    """Protocols a user may name: those defined in transforms/ (when loadable) and cross-domain."""
    try:
        from ..protocols import list_protocols

        defined = list(list_protocols())
    except Exception:  # noqa: BLE001 - a broken spec file must not break reading stored results
        defined = []
    return sorted(set(defined) | set(_KNOWN_PROTOCOLS))


@app.command("table")
def table_cmd(
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="Protocol to tabulate (default: all stored)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset's results."),
    metric: Optional[str] = typer.Option(None, "--metric", "-m", help="top1|top5 (appearance); top1|miou|pixel_acc (cross-domain)."),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich|csv|markdown|latex."),
    with_paper: bool = typer.Option(False, "--with-paper", help="Add the paper's reported numbers (rows marked 'paper')."),
    results: Optional[Path] = typer.Option(None, "--results", help=_RESULTS_HELP),
    intervals: bool = typer.Option(True, "--intervals/--no-intervals", help="95 % intervals (default on): Wilson for an error, paired bootstrap over images for a drop (single-run top-k errors); bootstrap over images for mIoU, pixel accuracy and their cross-domain drops."),
    vs: Optional[str] = typer.Option(None, "--vs", help="Mark with * the errors that differ significantly from this model's (exact McNemar per cell, Holm over the table)."),
) -> None:
    """Stored results in the paper's shapes: models x shifts (Table 1), train x test domain (Table 6)."""
    from ..results.frame import summarize
    from ..results.leaderboard import load_paper
    from ..results.tables import FORMATS, NoResultsError, build_tables, hooked_tables, render_tables

    if fmt not in FORMATS:
        raise UnknownNameError("table format", fmt, FORMATS)
    frame, records = _load_with_records(results, protocol, dataset, allow_empty=with_paper)
    paper = None
    if with_paper:
        paper = load_paper()
        if frame.empty:  # nothing measured: show what the paper reported for this protocol
            if protocol:
                paper = paper[[protocol == p or protocol.startswith(p + "-") for p in paper["protocol"]]]
            if dataset:
                paper = paper[paper["dataset"] == dataset]
    width = console.width if fmt == "rich" else None  # joined cells that would not fit: a table per metric
    summary = summarize(frame)
    if intervals or vs:
        from ..results.intervals import add_intervals
        from ..results.versus import add_versus

        root = results_dir(results)
        summary = add_intervals(summary, frame, records, root) if intervals else summary
        summary = add_versus(summary, frame, records, root, vs) if vs else summary
    tables = build_tables(summary, metric=metric, paper=paper, width=width) + hooked_tables(frame, metric=metric)
    if not tables:
        raise NoResultsError("no results (measured or reported) match these options")
    out = render_tables(tables, fmt, width)
    if isinstance(out, str):
        typer.echo(out, nl=False)
    else:
        console.print(out)


@leaderboard_app.command("publish")
def publish_cmd(
    results: Optional[Path] = typer.Option(None, "--results", help=_RESULTS_HELP),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Folder to write <dataset>-<protocol>.csv/.md into."),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="Only this protocol."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset."),
    html: bool = typer.Option(False, "--html", help="Also write the static site into --out: index.html, "
                              "one page per leaderboard there, and each run's provenance (.provenance.json)."),
) -> None:
    """Write leaderboards/<dataset>-<protocol>.csv (fixed schema) and its Markdown page, and, where
    the records kept per-image outcomes, <dataset>-<protocol>.outcomes.json (for `dgbench check`)."""
    from ..results.csvio import output_dir
    from ..results.leaderboard import publish
    from ..results.leaderboard_outcomes import publish_outcomes

    frame, records = _load_with_records(results, protocol, dataset)
    # The per-image outcomes first: each Markdown page shows the intervals its sidecar gives.
    outcomes = publish_outcomes(frame, results_dir(results), output_dir(out))
    written = publish(frame, out)
    if html:
        from ..results.site import publish_site

        written += publish_site(frame, records, out)
    written += outcomes
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@leaderboard_app.command("site")
def site_cmd(
    sources: Optional[list[Path]] = typer.Argument(None, help="Leaderboard CSVs or folders of them "
                                                   "(default: the built-in leaderboards)."),
    out: Path = typer.Option(..., "--out", help="Folder to write index.html and the pages into."),
) -> None:
    """Build the static site (index.html + one page per leaderboard) from published CSVs."""
    from ..results.site import build_site, leaderboard_csvs

    for path in build_site(leaderboard_csvs(sources or [data_dir("leaderboards")]), out):
        console.print(f"wrote {path}", highlight=False)


@app.command("check")
def check_cmd(
    baseline: Optional[Path] = typer.Option(None, "--baseline", "-b",
                                            help="Published leaderboard CSV to compare against "
                                                 "(default: the built-in benchmark's, leaderboards/digits-appearance.csv)."),
    tolerance: list[str] = typer.Option([], "--tolerance", "-t",
                                        help="METRIC=VALUE, absolute, in CSV units (e.g. top1_err=0.5, all=0.2); repeatable. Default 0."),
    results: Optional[Path] = typer.Option(None, "--results", help=_RESULTS_HELP),
    rerun: bool = typer.Option(False, "--rerun", help="Re-run the protocol behind the leaderboard instead of reading stored results."),
    show_all: bool = typer.Option(False, "--all", help="Show every compared value, not only the failures."),
    significance: bool = typer.Option(True, "--significance/--no-significance",
                                      help="Also fail an error whose change is significant: exact McNemar on the images "
                                           "that flipped (the leaderboard's .outcomes.json vs the run's), Holm-adjusted. "
                                           "--no-significance: the fixed tolerance only."),
) -> None:
    """Compare a leaderboard with measured results: exit 0 within tolerance (and, with per-image
    outcomes, no significant change), 1 with a diff table."""
    from ..results.check import check, get_rerun, parse_tolerances, render_check

    if baseline is None:
        baseline = data_dir("leaderboards") / DEFAULT_BASELINE
    if not baseline.is_file():
        raise DgbenchError(f"no baseline leaderboard at {baseline} (write one with `dgbench leaderboard "
                           "publish`; the committed ones live under leaderboards/)")
    fn = None
    if rerun:
        from ..protocols.rerun import rerun_leaderboard

        fn = get_rerun() or rerun_leaderboard  # a runner installed with set_rerun wins (tests)
    result = check(baseline, results_dir(results), parse_tolerances(tolerance), rerun=fn, significance=significance)
    console.print(render_check(result, show_all=show_all))
    if not result.ok:
        raise typer.Exit(1)


@app.command("plot")
def plot_cmd(
    out: Path = typer.Option(Path("dgbench-drops.png"), "--out", "-o", help="PNG to write."),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="Only this protocol."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset."),
    metric: Optional[str] = typer.Option(None, "--metric", "-m", help="top1|top5 (appearance); top1|miou|pixel_acc (cross-domain)."),
    results: Optional[Path] = typer.Option(None, "--results", help=_RESULTS_HELP),
) -> None:
    """Draw the drops per model and shift (and severity curves of sweeps) into a PNG."""
    from ..results.plot import plot_results

    frame = _load(results, protocol, dataset)
    console.print(f"wrote {plot_results(frame, out, metric=metric)}", highlight=False)


@app.command("corruptions")
def corruptions_cmd(
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="corruptions, corruptions-lite or corruptions-extra (default: every stored one)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset's results."),
    reference: str = typer.Option("auto", "--reference", help="CE normalizer: auto (AlexNet's published errors on ImageNet, none elsewhere), alexnet, none, or a model of these results."),
    fmt: str = typer.Option("markdown", "--format", "-f", help="markdown|csv."),
    plot_out: Optional[Path] = typer.Option(None, "--plot", help="Also draw top-1 error vs severity per family into this PNG."),
    results: Optional[Path] = typer.Option(None, "--results", help=_RESULTS_HELP),
) -> None:
    """Common corruptions: corruption x severity tables, mCE, relative mCE, mean error per family."""
    from ..results import corruption

    reports = corruption.corruption_reports(_load(results, protocol, dataset), reference=reference)
    typer.echo(corruption.render(reports, fmt), nl=False)
    if plot_out is not None:
        console.print(f"wrote {corruption.plot(reports, plot_out)}", highlight=False)

"""Re-measure what a published leaderboard lists: the runner behind ``dgbench check --rerun``.

The results layer compares numbers; this module, one layer up, knows how to produce them. Each
group of leaderboard rows (dataset, protocol) is re-run with ``force=True`` into the given
results directory, so the check compares a fresh measurement, never the stored one it came from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError


def rerun_leaderboard(baseline: pd.DataFrame, results_dir: Path) -> list[dict[str, Any]]:
    """Run every (dataset, protocol) of a validated leaderboard frame again; return the records."""
    records: list[dict[str, Any]] = []
    for (dataset, protocol), rows in baseline.groupby(["dataset", "protocol"], sort=True):
        if (rows["model_kwargs"].fillna("") != "").any():
            raise DgbenchError(
                f"{dataset} · {protocol}: rows with variant kwargs cannot be re-run by name; "
                "compare against stored results instead (without --rerun)"
            )
        models = sorted(set(rows["model"]))
        if protocol == "cross-domain":
            records += _rerun_cross_domain(str(dataset), models, rows, results_dir)
        else:
            records += _rerun_appearance(str(dataset), str(protocol), models, rows, results_dir)
    return records


def _rerun_appearance(dataset: str, protocol: str, models: list[str], rows: pd.DataFrame,
                      results_dir: Path) -> list[dict[str, Any]]:
    from .appearance import run_protocol

    # The shifts as listed (a fallback such as cv-stylize for monet is named by what was run).
    shifts = sorted(set(rows["shift"]))
    summary = run_protocol(models, protocol, dataset=dataset, shifts=_protocol_order(protocol, shifts),
                           results=results_dir, force=True, progress=False)
    return summary.records


def _protocol_order(protocol: str, shifts: list[str]) -> list[str]:
    """The listed shifts in the protocol's order (its reference first), with fallbacks undone."""
    from . import get_protocol, protocol_shifts

    proto = get_protocol(protocol)
    undo = {v: k for k, v in proto.fallbacks.items()}
    wanted = {undo.get(s, s) for s in shifts}
    return [s.name for s in protocol_shifts(protocol) if s.name in wanted]


def _rerun_cross_domain(dataset: str, models: list[str], rows: pd.DataFrame,
                        results_dir: Path) -> list[dict[str, Any]]:
    from ..data.digit_scenes import SCENE_DOMAINS
    from .cross_domain import DIGITS_PAIR, run_cross_domain
    from .segmentation import run_builtin_scenes

    domains = set(rows["train_domain"]) | set(rows["test_domain"])
    if domains <= set(DIGITS_PAIR):
        return run_cross_domain(models, DIGITS_PAIR[0], results=results_dir, force=True)
    if domains <= set(SCENE_DOMAINS):
        return run_builtin_scenes(models, results=results_dir, force=True)
    raise DgbenchError(
        f"{dataset} · cross-domain: re-running needs the domains' data and checkpoints "
        f"({', '.join(sorted(domains))}); run the protocol, then `dgbench check` without --rerun"
    )

"""Re-measure what a published leaderboard lists: the runner behind ``dgbench check --rerun``.

The results layer compares numbers; this module, one layer up, knows how to produce them. Each
group of leaderboard rows (dataset, protocol) is re-run through :func:`dgbench.protocols.run`
with ``force=True`` into the given results directory, so the check compares a fresh measurement,
never the stored one it came from. A kind re-runs a group through its own ``rerun_request``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DgbenchError
from .base import RunRequest, get, run


def rerun_leaderboard(baseline: pd.DataFrame, results_dir: Path) -> list[dict[str, Any]]:
    """Run every (dataset, protocol) of a validated leaderboard frame again; return the records."""
    records: list[dict[str, Any]] = []
    for (dataset, protocol), rows in baseline.groupby(["dataset", "protocol"], sort=True):
        if (rows["model_kwargs"].fillna("") != "").any():
            raise DgbenchError(
                f"{dataset} · {protocol}: rows with variant kwargs cannot be re-run by name; "
                "compare against stored results instead (without --rerun)"
            )
        proto = get(str(protocol))
        request = proto.rerun_request(str(dataset), rows)
        request.results, request.force, request.progress = results_dir, True, False
        records += run(proto, request).records
    return records


def appearance_request(protocol: str, dataset: str, rows: pd.DataFrame) -> RunRequest:
    """The listed models and shifts, in the protocol's order (fallbacks undone: a cv-stylize row
    listed for Monet on the digits re-runs Monet's slot)."""
    from .specs import get_protocol, protocol_shifts

    proto = get_protocol(protocol)
    undo = {v: k for k, v in proto.fallbacks.items()}
    wanted = {undo.get(s, s) for s in rows["shift"]}
    shifts = [s.name for s in protocol_shifts(protocol) if s.name in wanted]
    return RunRequest(model=sorted(set(rows["model"])), dataset=dataset, shifts=shifts)


def cross_domain_request(protocol: str, rows: pd.DataFrame) -> RunRequest:
    """The pair whose domains the rows list; only pairs with shipped checkpoints can be re-run."""
    from .specs import registry

    domains = set(rows["train_domain"]) | set(rows["test_domain"])
    reg = registry()
    pair = next((p for p in reg.pairs.values() if set(p.domains) == domains), None)
    if pair is None or pair.weights != "builtin":
        raise DgbenchError(
            f"{protocol}: re-running needs the domains' data and checkpoints ({', '.join(sorted(domains))}); "
            "run the protocol, then `dgbench check` without --rerun"
        )
    return RunRequest(model=sorted(set(rows["model"])), dataset=pair.name)

"""A leaderboard's Markdown page shows 95 % intervals from its per-image outcomes sidecar
(``<stem>.outcomes.json``): Wilson for an error, a paired bootstrap over images for a drop, the
numbers those of :mod:`dgbench.metrics.stats` on the same bits; pages without a sidecar unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.metrics import stats
from dgbench.metrics.outcomes import SampleOutcomes
from dgbench.results import outcomes
from dgbench.results.kinds import get_kind
from dgbench.results.leaderboard import load_leaderboard, publish
from dgbench.results.leaderboard_outcomes import sidecar_path
from dgbench.results.store import ResultStore
from dgbench.results.tables import markdown_page
from results_fixtures import appearance

N = 300
REPO = Path(__file__).resolve().parents[1]
SHIFTS = (("origin", 0.9, 0.99), ("rgb+50", 0.7, 0.95))


def _truth() -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per (model, shift): top-1 and top-5 correctness of N images (top-5 right wherever top-1 is)."""
    rng = np.random.default_rng(11)
    out = {}
    for m in ("a", "b"):
        for s, acc1, acc5 in SHIFTS:
            top1 = rng.random(N) < acc1
            out[(m, s)] = top1, top1 | (rng.random(N) < (acc5 - acc1) / (1 - acc1))
    return out


def _err(c: np.ndarray) -> float:
    return 100 * (1 - c.mean())


def _records(truth, root: Path | None, nudge: float = 0.0) -> list[dict]:
    """Appearance records of ``truth`` (their per-image outcomes written under ``root`` when given);
    ``nudge`` moves model b's rgb+50 top-1 error (a record the outcomes no longer match)."""
    recs = []
    for (model, shift), (top1, top5) in truth.items():
        o1, o5 = truth[(model, "origin")]
        err1 = _err(top1) + (nudge if (model, shift) == ("b", "rgb+50") else 0.0)
        rec = appearance(model, shift, err1, _err(top5), (_err(o1), _err(o5)), dataset="digits",
                         dataset_fingerprint="fp", num_samples=N)
        if root is not None:
            outcomes.write(root, "appearance", rec["key"],
                           SampleOutcomes(np.ones(N, bool), np.where(top1, 1, 2), {1: top1, 5: top5}), "order")
        recs.append(rec)
    return recs


@pytest.fixture
def board(tmp_path: Path):
    truth = _truth()
    root = tmp_path / "res"
    ResultStore(root).append(_records(truth, root))
    res = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(root), "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    return tmp_path / "lb" / "digits-appearance.csv", truth, root


def _expected_cell(truth, model: str, shift: str, k: int) -> str:
    """The page cell computed directly with dgbench.metrics.stats on the same bits."""
    c = truth[(model, shift)][0 if k == 1 else 1]
    lo, hi = stats.wilson(int((~c).sum()), N)
    text = f"{_err(c):.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    if shift == "origin":
        return text
    ref = truth[(model, "origin")][0 if k == 1 else 1]
    d = stats.paired_bootstrap_diff(ref, c, n_boot=10_000)
    return text + f" ({100 * d.diff:.2f} [{100 * d.lo:.1f}, {100 * d.hi:.1f}])"


def test_page_intervals_are_those_of_stats_on_the_sidecar_bits(board) -> None:
    csv_path, truth, _ = board
    assert sidecar_path(csv_path).is_file()
    md = csv_path.with_suffix(".md").read_text()
    top1, top5 = md.split("top-5 error")
    for (model, shift) in truth:
        assert _expected_cell(truth, model, shift, 1) in top1, (model, shift)
        assert _expected_cell(truth, model, shift, 5) in top5, (model, shift)
    assert "Wilson" in md and "paired bootstrap" in md and "[`digits-appearance.outcomes.json`]" in md
    assert md.rstrip().endswith("show none._")  # the footer names the source and the methods


def test_csv_is_the_same_with_or_without_outcomes_and_the_page_without_them_has_no_interval(board, tmp_path) -> None:
    csv_path, truth, _ = board
    plain = publish(_records(truth, None), tmp_path / "plain")
    assert plain[0].read_bytes() == csv_path.read_bytes()  # the published numbers do not change
    page = plain[1].read_text()
    assert "[" not in page.replace("[`digits-appearance.csv`]", "") and "Wilson" not in page


def test_publishing_twice_writes_the_same_bytes(board, tmp_path: Path) -> None:
    csv_path, _, root = board
    folder = csv_path.parent
    first = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    res = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(root), "--out", str(tmp_path / "two")])
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(root), "--out", str(folder)])
    assert again.exit_code == 0, again.output
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "two").iterdir())} == first
    assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == first


def test_a_stale_sidecar_lends_no_interval(board) -> None:
    """Numbers the sidecar does not reproduce (here b's rgb+50 top-1, moved 1 point) show none."""
    csv_path, truth, _ = board
    publish(_records(truth, None, nudge=1.0), csv_path.parent)  # the page beside the old sidecar
    top1 = csv_path.with_suffix(".md").read_text().split("top-5 error")[0]
    row_b = next(line for line in top1.splitlines() if line.startswith("| b |"))
    origin, moved = (_err(truth[("b", s)][0]) for s in ("origin", "rgb+50"))
    assert row_b.split(" | ")[1:] == [f"{origin:.2f} [{100 * x:.1f}, {100 * y:.1f}]"
                                      for x, y in [stats.wilson(round(origin * N / 100), N)]] + \
        [f"{moved + 1:.2f} ({moved + 1 - origin:.2f}) |"]  # value and drop, no brackets
    assert _expected_cell(truth, "a", "rgb+50", 1) in top1  # the other rows keep theirs


@pytest.mark.parametrize("csv_path", sorted((REPO / "leaderboards").glob("*.csv")), ids=lambda p: p.stem)
def test_committed_pages_are_what_publishing_renders(csv_path: Path) -> None:
    """Every committed page of the appearance and cross-domain shapes is its CSV rendered by
    ``markdown_page``: with intervals where a sidecar lies beside the CSV, as before without one."""
    lb = load_leaderboard(csv_path)
    if get_kind(lb.attrs["kind"]).hooks is not None:  # a kind with its own page (divergence, shape bias, ...)
        pytest.skip("rendered by its kind's own page writer")
    page = csv_path.with_suffix(".md").read_text()
    assert markdown_page(lb, csv_path.name) == page
    assert ("Wilson" in page) == sidecar_path(csv_path).is_file()

"""`dgbench check --rerun` re-measures a published leaderboard with the real protocol runner."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dgbench.cli import app


def test_rerun_check_passes_unchanged_and_fails_a_planted_regression(tmp_path: Path) -> None:
    runner = CliRunner()
    first = tmp_path / "first"
    run = runner.invoke(app, ["run", "--model", "ibn_b", "--protocol", "appearance-lite", "--dataset", "digits",
                              "--results", str(first), "--no-progress"])
    assert run.exit_code == 0, run.output
    pub = runner.invoke(app, ["leaderboard", "publish", "--results", str(first), "--out", str(tmp_path / "lb")])
    assert pub.exit_code == 0, pub.output
    baseline = tmp_path / "lb" / "digits-appearance-lite.csv"
    assert baseline.is_file()

    fresh = runner.invoke(app, ["check", "--baseline", str(baseline), "--rerun", "--results", str(tmp_path / "again")])
    assert fresh.exit_code == 0, fresh.output
    assert "check passed" in fresh.output
    assert (tmp_path / "again" / "appearance-lite.jsonl").is_file()  # measured anew, not read back

    # Plant a regression in the baseline: IBN-b's std-x1.5 error 1 point lower than measured.
    lines = baseline.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if ",std-x1.5," in line)
    cells = lines[i].split(",")
    cells[8] = f"{float(cells[8]) - 1:.2f}"  # top1_err_pct
    lines[i] = ",".join(cells)
    baseline.write_text("\n".join(lines) + "\n")
    moved = runner.invoke(app, ["check", "--baseline", str(baseline), "--rerun", "--results", str(tmp_path / "third")])
    assert moved.exit_code == 1, moved.output
    assert "FAIL" in moved.output and "std-x1.5" in moved.output

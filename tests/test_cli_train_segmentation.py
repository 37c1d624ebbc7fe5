"""`dgbench train --task segmentation`: the CLI reaches the paper-recipe trainer and resumes."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dgbench.cli import app

ARGS = ["train", "--task", "segmentation", "--dataset", "digit-scenes", "--model", "ibn_a", "--epochs", "1",
        "--batch-size", "8", "--crop", "48", "--device", "cpu", "--workers", "0"]


def test_segmentation_training_stops_and_resumes_from_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, [*ARGS, "--out", str(tmp_path), "--stop-after", "2"])
    assert first.exit_code == 0, first.output
    assert "stopped at iteration 2" in first.output
    assert (tmp_path / "checkpoint.pth").is_file() and not (tmp_path / "model.pth").exists()

    second = runner.invoke(app, [*ARGS, "--out", str(tmp_path), "--stop-after", "3"])
    assert second.exit_code == 0, second.output
    assert "stopped at iteration 3" in second.output  # continued from 2, not restarted


def test_unknown_task_is_refused_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["train", "--task", "segm"])
    assert result.exit_code != 0
    assert "segmentation" in str(result.exception) or "segmentation" in result.output

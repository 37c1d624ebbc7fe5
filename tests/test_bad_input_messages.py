"""Bad input a new user types: one line that reads as English and says what to fix, exit 2, no
traceback, nothing stored."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import DgbenchError

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    """(exit code, what the user sees): a DgbenchError is what dgbench's main() prints with exit 2."""
    res = runner.invoke(app, list(args), env={"COLUMNS": "300"})
    if isinstance(res.exception, DgbenchError):
        return 2, res.output + str(res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def test_a_callable_that_returns_no_module_is_named_with_its_value(tmp_path: Path) -> None:
    code, out = run("run", "--model", "builtins:int", "--protocol", "appearance-lite", "--dataset", "digits",
                    "--results", str(tmp_path))
    assert code == 2 and "--model builtins:int: int(**{}) returned an int (0), not a torch.nn.Module" in out, out
    assert not list(tmp_path.iterdir())


def test_an_option_the_pair_does_not_use_names_protocol_and_pair_once(tmp_path: Path) -> None:
    code, out = run("run", "--model", "ibn_a", "--protocol", "finetune", "--dataset", "digit-scenes",
                    "--checkpoint-b", __file__, "--results", str(tmp_path))
    assert code == 2 and out.strip().endswith(
        "--checkpoint-b: not used by the finetune protocol on the digit-scenes pair"), out
    assert "pair protocol" not in out and not list(tmp_path.iterdir())


def _unreadable(kind: str, path: Path) -> Path:
    """A file torch.load(weights_only=True) refuses, of the kinds users pass by mistake."""
    import argparse

    import torch

    if kind == "pickled object":  # a training script's checkpoint with its argparse options inside
        torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.zeros(2)}}, path)
    elif kind == "truncated":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("not a checkpoint\n")
    return path


@pytest.mark.parametrize(("kind", "reason"), [
    ("pickled object", "it holds a pickled argparse.Namespace, which weights_only=True will not run; re-save just the "
                       "tensors (torch.save(model.state_dict(), path))"),
    ("truncated", "the file is empty, truncated or damaged (copy it again)"),
    ("empty", "the file is empty, truncated or damaged (copy it again)"),
    ("text", "not a file torch.save wrote (Unsupported operand"),
])
def test_an_unreadable_checkpoint_is_one_line_saying_why(kind: str, reason: str, tmp_path: Path) -> None:
    ckpt = _unreadable(kind, tmp_path / "model.pth")
    results = tmp_path / "results"
    code, out = run("run", "--model", "ibn_a", "--protocol", "appearance-lite", "--dataset", "digits",
                    "--checkpoint", str(ckpt), "--results", str(results))
    msg = " ".join(out.split())
    assert code == 2 and f"cannot read checkpoint {ckpt} with weights_only=True: {reason}" in msg, out
    assert "PyTorch 2.6" not in msg and "documentation" not in msg  # torch's paragraphs are gone
    assert not results.exists()


def test_results_pointing_at_a_file_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgbench.cli.doctor import _results_rows

    afile = tmp_path / "results.txt"
    afile.write_text("notes\n")
    for args in (["run", "--model", "ibn_a", "--protocol", "appearance-lite", "--dataset", "digits", "--limit", "4"],
                 ["table"]):
        code, out = run(*args, "--results", str(afile))
        assert code == 2 and f"--results {afile}: is a file, not a folder" in " ".join(out.split()), out
    assert afile.read_text() == "notes\n"
    monkeypatch.setenv("DGBENCH_RESULTS", str(afile))
    code, out = run("table")
    assert code == 2 and f"$DGBENCH_RESULTS {afile}: is a file" in " ".join(out.split()), out
    (row,) = _results_rows(None)  # the doctor reports it as a row instead of stopping
    assert row[2] == "error" and "is a file, not a folder" in row[3]


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "0"], "Invalid value for '--epochs'"),
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["--threads", "0"], "Invalid value for '--threads'"),
    (["--lr", "-1"], "--lr -1: the learning rate must be > 0"),
    (["--lr", "0"], "--lr 0: the learning rate must be > 0"),
    (["--task", "segmentation", "--dataset", "digit-scenes", "--crop", "1"], "Invalid value for '--crop'"),
    (["--task", "segmentation", "--dataset", "digit-scenes", "--workers", "-1"], "Invalid value for '--workers'"),
    (["--task", "segmentation", "--dataset", "digit-scenes", "--stop-after", "0"], "Invalid value for '--stop-after'"),
    (["--task", "segmentation", "--dataset", "gta5", "--gta5-fraction", "2"],
     "--gta5-fraction 2: a share of GTA5's train split, in (0, 1]"),
])
def test_train_refuses_numbers_it_cannot_use_before_training(args: list[str], message: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """0 epochs/batch/threads used to mean "the recipe's default" silently; a negative learning rate
    and a 1-pixel crop were tracebacks from torch; a GTA5 share of 2 went unchecked."""
    from dgbench.train import classification, segmentation

    def must_not_train(*a: object, **k: object) -> None:
        raise AssertionError("trained despite a bad option")

    monkeypatch.setattr(classification, "train_classifier", must_not_train)
    monkeypatch.setattr(segmentation, "train_segmentation", must_not_train)
    code, out = run("train", *args, "--out", str(tmp_path / "out"))
    assert code == 2 and message in " ".join(out.split()), out
    assert not list(tmp_path.iterdir())

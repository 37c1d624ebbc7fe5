"""Bad input a new user types: one line that reads as English and says what to fix, exit 2, no
traceback, nothing stored."""
from __future__ import annotations

from pathlib import Path

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
    assert code == 2 and "--model builtins:int: returned an int (0), not a torch.nn.Module" in out, out
    assert not list(tmp_path.iterdir())


def test_an_option_the_pair_does_not_use_names_protocol_and_pair_once(tmp_path: Path) -> None:
    code, out = run("run", "--model", "ibn_a", "--protocol", "finetune", "--dataset", "digit-scenes",
                    "--checkpoint-b", __file__, "--results", str(tmp_path))
    assert code == 2 and out.strip().endswith(
        "--checkpoint-b: not used by the finetune protocol on the digit-scenes pair"), out
    assert "pair protocol" not in out and not list(tmp_path.iterdir())

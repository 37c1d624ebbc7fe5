"""The typer application and the shared rich console; command modules register on ``app``."""
from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console

app = typer.Typer(
    name="dgbench",
    help="Domain-generalization benchmark harness: IBN-Net model zoo, appearance and "
    "cross-domain protocols, result tables, leaderboards and a regression check.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


class OutFormat(str, Enum):
    rich = "rich"
    json = "json"


def note(msg: str) -> None:
    """A one-line note for the user, on stderr (stdout stays clean for --format json)."""
    err_console.print(f"[yellow]note:[/] {msg}", highlight=False)

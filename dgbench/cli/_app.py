"""The typer application and the shared rich console; command modules register on ``app``."""
from __future__ import annotations

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

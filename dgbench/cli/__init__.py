"""dgbench's command line: a thin typer layer over the Python API.

Each module here registers its commands on :data:`app`; errors that are the user's to fix
(:class:`dgbench.errors.DgbenchError`) print as one red message and exit with status 2.
"""
from __future__ import annotations

import importlib
import sys

from rich.markup import escape

from ..errors import DgbenchError
from ._app import app, err_console

# Command modules, one per area. (Imported for their side effect: registering commands.)
_COMMAND_MODULES = ("models", "run", "prepare", "doctor", "results", "train", "seg", "sweep", "compare")
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:  # an area not built yet in this checkout
        if _exc.name != f"{__name__}.{_name}":
            raise


def main() -> None:
    try:
        app()
    except DgbenchError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)

"""``dgbench models``: list the model zoo with sizes, costs and published weights."""
from __future__ import annotations

import csv
import io
import json
from enum import Enum

import typer
from rich.table import Table

from ._app import app, console


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


COLUMNS = ("name", "family", "backbone", "variant", "params_m", "gflops", "weights", "aliases")


def rows(pattern: str | None = None, pretrained: bool = False, image_size: int = 224) -> list[dict[str, object]]:
    """One dict per model matching ``pattern``: the columns of ``dgbench models``."""
    from ..models.registry import list_models, model_info
    from ..models.stats import model_stats

    out: list[dict[str, object]] = []
    for name in list_models(pattern, pretrained=pretrained):
        info = model_info(name)
        stats = model_stats(name, image_size)
        out.append({
            "name": name,
            "family": info.family,
            "backbone": info.backbone,
            "variant": info.variant,
            "params_m": round(stats.params / 1e6, 2),
            "gflops": None if stats.gflops is None else round(stats.gflops, 2),
            "weights": info.pretrained_cfg.has_weights,
            "aliases": list(info.aliases),
        })
    return out


@app.command("models")
def models_cmd(
    pattern: str = typer.Argument(None, help="Glob or substring of model names/aliases, e.g. 'resnet50*' or ibn_b."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table (rich), csv or json."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Only models with published weights."),
    image_size: int = typer.Option(224, "--size", help="Square input size for the GFLOPs column."),
) -> None:
    """List the models dgbench knows: parameters (M), GFLOPs, and whether published weights exist.

    GFLOPs are multiply-accumulates of one image (torch's flop counter / 2), as in the ResNet
    papers. `dgbench.create_model(NAME, pretrained=True)` loads the published weights.
    """
    from ..errors import UnknownNameError
    from ..models.registry import _REGISTRY, aliases as all_aliases

    data = rows(pattern, pretrained, image_size)
    if not data and pattern:
        raise UnknownNameError("model", pattern, list(_REGISTRY) + list(all_aliases()))
    if fmt is Format.json:
        typer.echo(json.dumps(data, indent=2))
        return
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in data:
            writer.writerow({**r, "aliases": " ".join(r["aliases"]), "weights": "yes" if r["weights"] else "no"})  # type: ignore[arg-type]
        typer.echo(buf.getvalue(), nl=False)
        return
    table = Table(title=f"dgbench models ({len(data)}; GFLOPs at {image_size}x{image_size})")
    # Names are what users copy: never truncate them; let the other columns wrap instead.
    table.add_column("name", no_wrap=True)
    table.add_column("backbone", overflow="fold")
    table.add_column("variant", no_wrap=True)
    table.add_column("params (M)", justify="right", no_wrap=True)
    table.add_column("GFLOPs", justify="right", no_wrap=True)
    table.add_column("weights", justify="center", no_wrap=True)
    table.add_column("aliases", overflow="fold")
    for r in data:
        table.add_row(
            str(r["name"]), str(r["backbone"]), str(r["variant"]), f"{r['params_m']:.2f}",
            "-" if r["gflops"] is None else f"{r['gflops']:.2f}",
            "[green]yes[/]" if r["weights"] else "no", " ".join(r["aliases"]),  # type: ignore[arg-type]
        )
    console.print(table)

"""``dgbench models``: list the model zoo with sizes, costs and published weights (``--tags``: one
row per set of weights, with where it is, how inputs are prepared and the numbers its publisher reports)."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from enum import Enum

import typer
from rich.table import Table

from ._app import app, console


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


COLUMNS = ("name", "family", "backbone", "variant", "params_m", "gflops", "weights", "weights_source", "tags", "aliases")
TAG_COLUMNS = ("name", "architecture", "tag", "default", "weights_source", "file", "sha256", "input_size", "resize",
               "interpolation", "top1_err", "top5_err", "published_source", "license")


def rows(pattern: str | None = None, pretrained: bool = False, image_size: int = 224) -> list[dict[str, object]]:
    """One dict per model matching ``pattern``: the columns of ``dgbench models``."""
    from ..models.registry import list_models, model_info
    from ..models.stats import model_stats
    from ..models.pretrained import weights_label

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
            # torchvision V1 for the baselines: not the paper's re-implementation (see README)
            "weights_source": weights_label(info.pretrained_cfg),
            "tags": list(info.tags),  # the default first
            "aliases": list(info.aliases),
        })
    return out


def tag_rows(pattern: str | None = None) -> list[dict[str, object]]:
    """One dict per released set of weights of the models matching ``pattern`` (``dgbench models --tags``)."""
    from ..models.pretrained import weights_label
    from ..models.registry import list_models, model_info

    out: list[dict[str, object]] = []
    for name in list_models(pattern, pretrained=True):
        info = model_info(name)
        for cfg in info.weights:
            published = cfg.published_metrics
            out.append({
                "name": cfg.full_name, "architecture": name, "tag": cfg.tag, "default": cfg.tag == info.default_tag,
                "weights_source": weights_label(cfg), "file": cfg.file_name,
                "sha256": cfg.sha256 or cfg.sha256_prefix, "input_size": cfg.input_size[-1],
                "resize": cfg.resize_size, "interpolation": cfg.interpolation,
                "top1_err": published.get("top1_err"), "top5_err": published.get("top5_err"),
                "published_source": cfg.published_source, "license": cfg.license,
            })
    return out


def _echo_as_data(data: list[dict[str, object]], fmt: Format, columns: tuple[str, ...],
                  as_csv: Callable[[dict[str, object]], dict[str, object]]) -> bool:
    """Print ``data`` as JSON or as CSV (``as_csv`` makes a row's cells text); False: a table is wanted."""
    if fmt is Format.json:
        typer.echo(json.dumps(data, indent=2))
        return True
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(as_csv(r) for r in data)
        typer.echo(buf.getvalue(), nl=False)
        return True
    return False


@app.command("models")
def models_cmd(
    pattern: str = typer.Argument(None, help="Glob or substring of model names/aliases, e.g. 'resnet50*' or ibn_b."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table (rich), csv or json."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Only models with published weights."),
    image_size: int = typer.Option(224, "--size", help="Square input size for the GFLOPs column."),
    tags: bool = typer.Option(False, "--tags", help="One row per weights tag (NAME.TAG): file, hash, "
                              "preprocessing and the publisher's top-1/top-5 error."),
) -> None:
    """List the models dgbench knows: parameters (M), GFLOPs, and whether published weights exist
    and who trained them (the baselines' are torchvision's V1 weights, not the paper's).

    GFLOPs are multiply-accumulates of one image (torch's flop counter / 2), as in the ResNet
    papers. `dgbench.create_model(NAME, pretrained=True)` loads the published weights: the first
    tag's; `NAME.TAG` (e.g. resnet50.tv2_in1k, also as --model) selects another.
    """
    from ..errors import UnknownNameError
    from ..models.registry import _REGISTRY, aliases as all_aliases

    data = tag_rows(pattern) if tags else rows(pattern, pretrained, image_size)
    if not data and pattern:
        raise UnknownNameError("model", pattern, list(_REGISTRY) + list(all_aliases()))
    if tags:
        _print_tags(data, fmt)
        return
    if _echo_as_data(data, fmt, COLUMNS, lambda r: {
            **r, "aliases": " ".join(r["aliases"]), "tags": " ".join(r["tags"]),  # type: ignore[arg-type]
            "weights": "yes" if r["weights"] else "no"}):
        return
    table = Table(title=f"dgbench models ({len(data)}; GFLOPs at {image_size}x{image_size})")
    # Names are what users copy: never truncate them; let the other columns wrap instead.
    table.add_column("name", no_wrap=True)
    table.add_column("backbone", overflow="fold")
    table.add_column("variant", no_wrap=True)
    table.add_column("params (M)", justify="right", no_wrap=True)
    table.add_column("GFLOPs", justify="right", no_wrap=True)
    table.add_column("weights", overflow="fold")  # who trained them, or no
    table.add_column("tags (default first)", overflow="fold")
    table.add_column("aliases", overflow="fold")
    for r in data:
        table.add_row(
            str(r["name"]), str(r["backbone"]), str(r["variant"]), f"{r['params_m']:.2f}",
            "-" if r["gflops"] is None else f"{r['gflops']:.2f}",
            f"[green]{r['weights_source']}[/]" if r["weights"] else "no",
            " ".join(r["tags"]),  # type: ignore[arg-type]
            " ".join(r["aliases"]),  # type: ignore[arg-type]
        )
    console.print(table)


def _print_tags(data: list[dict[str, object]], fmt: Format) -> None:
    """``dgbench models --tags`` in the chosen format."""
    if _echo_as_data(data, fmt, TAG_COLUMNS, lambda r: {**r, "default": "yes" if r["default"] else "no"}):
        return

    def err(value: object) -> str:
        return "-" if value is None else f"{value:g}"

    table = Table(title=f"dgbench weights ({len(data)}; create_model(NAME, pretrained=True); * = default)")
    table.add_column("name", no_wrap=True)
    table.add_column("weights", overflow="fold")
    table.add_column("file", overflow="fold")
    table.add_column("input", no_wrap=True)
    table.add_column("published top-1/top-5 err", no_wrap=True)
    table.add_column("numbers from", overflow="fold")
    for r in data:
        table.add_row(f"{r['name']}{' *' if r['default'] else ''}", str(r["weights_source"]), str(r["file"]),
                      f"{r['resize']}->{r['input_size']} {r['interpolation']}",
                      f"{err(r['top1_err'])}/{err(r['top5_err'])}", str(r["published_source"] or "-"))
    console.print(table)

"""Segmentation commands: ``dgbench score`` (score a folder of predictions like the official tool)."""
from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path

import typer
from rich.table import Table

from ._app import app, console


class OutputFormat(str, Enum):
    rich = "rich"
    json = "json"


class PredKind(str, Enum):
    auto = "auto"
    labelIds = "labelIds"
    trainIds = "trainIds"


def _pct(v: float) -> float | None:
    return None if math.isnan(v) else round(100.0 * v, 4)


@app.command("score")
def score(
    pred: Path = typer.Option(..., "--pred", help="Prediction PNGs named {city}_{seq}_{frame}*.png (labelIds, or dgbench's trainId / output folder)."),
    gt: Path = typer.Option(..., "--gt", help="The Cityscapes root (uses gtFine/<split>) or a gtFine/<split> folder."),
    split: str = typer.Option("val", "--split", help="Split under the Cityscapes root's gtFine/."),
    kind: PredKind = typer.Option(PredKind.auto, "--kind", help="Prediction values: labelIds (official), trainIds, or auto."),
    fmt: OutputFormat = typer.Option(OutputFormat.rich, "--format", help="rich table or json."),
) -> None:
    """Score Cityscapes predictions: per-class IoU, mIoU and pixel accuracy (one confusion matrix).

    Same definitions as cityscapesscripts' evalPixelLevelSemanticLabeling: classes absent from
    ground truth and prediction are NaN (null in json) and left out of the mean; predicting a void
    labelId on an evaluated pixel is a false negative.
    """
    from ..protocols.prediction_scoring import score_predictions

    m = score_predictions(pred, gt, split=split, kind=kind.value)
    if fmt is OutputFormat.json:
        out = {
            "miou": _pct(m.miou),
            "pixel_acc": _pct(m.pixel_acc),
            "per_class_iou": {k: _pct(v) for k, v in m.iou_by_name().items()},
            "num_pixels": m.num_pixels,
            "num_valid_classes": m.num_valid_classes,
            "units": "percent",
        }
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"{pred} vs {gt}")
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, v in m.iou_by_name().items():
        table.add_row(name, "n/a" if math.isnan(v) else f"{100 * v:.2f}")
    table.add_section()
    table.add_row("[bold]mIoU[/]", f"[bold]{100 * m.miou:.2f}[/]")
    table.add_row("pixel accuracy", f"{100 * m.pixel_acc:.2f}")
    console.print(table)


def _seg_doctor_rows() -> list[tuple[str, str, str, str]]:
    """``dgbench doctor`` rows for Cityscapes and GTA5 (header checks only, no decoding)."""
    from ..config import ENV_VARS, data_root
    from ..data import cityscapes, gta5

    rows = []
    for name, mod in (("cityscapes", cityscapes), ("gta5", gta5)):
        root = data_root(name)
        where = f"${ENV_VARS[name]}" + (f" = {root}" if root else " (unset)")
        if root is None:
            rows.append((name, where, "not configured", f"set {ENV_VARS[name]} (or pass --{name}-root)"))
            continue
        rep = mod.check_layout(root)
        status = "ok" if rep.ok and not rep.quirks else ("quirks" if rep.ok else "error")
        rows.append((name, where, status, "; ".join(rep.problems + rep.notes)))
    return rows


try:  # `dgbench doctor` lives in cli/run.py (another area); add the rows when it is there
    from .doctor import register_doctor_check
except ImportError:  # pragma: no cover - that area not in this checkout
    pass
else:
    register_doctor_check(_seg_doctor_rows)

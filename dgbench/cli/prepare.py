"""``dgbench prepare``: render an image shift (Monet, cv-stylize) once into the style cache."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, console, err_console, note

@app.command("prepare")
def prepare_cmd(
    shift: str = typer.Argument(..., help="the image shift to render: monet, or cv-stylize"),
    data: Optional[Path] = typer.Option(None, "--data", help="ImageNet validation folder"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="a registered dataset instead of ImageNet"),
    weights: Optional[str] = typer.Option(None, "--weights", help="CycleGAN generator: latest_net_G.pth path or URL"),
    model: Optional[str] = typer.Option(None, "--model", help="take the preprocessing (resize/crop) from this model's config"),
    resize: int = typer.Option(256, "--resize", help="shorter side resized to this (ignored with --model)"),
    crop: int = typer.Option(224, "--crop", help="center crop (ignored with --model)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    subset: Optional[int] = typer.Option(None, "--subset", min=1),
    device: str = typer.Option("auto", "--device"),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Render an image shift once into the style cache (lossless PNGs, resumable)."""
    from ..data.base import Preprocess, build_dataset
    from ..protocols import get_shift
    from ..protocols.appearance import choose_dataset, select
    from ..protocols.style_cache import prepare

    spec = get_shift(shift)
    if model:
        from ..models import get_pretrained_cfg

        prep = Preprocess.from_cfg(get_pretrained_cfg(model))
    else:
        prep = Preprocess(resize_size=resize, crop_size=crop)
    name, root, ds_note = choose_dataset(dataset, data)
    if ds_note:
        note(ds_note)
    ds = select(build_dataset(name, root, preprocess=prep), limit, subset)
    try:
        rep = prepare(spec, ds, prep, weights=weights, device=device, batch_size=batch_size, workers=workers, progress=progress)
    except KeyboardInterrupt:
        err_console.print("[bold yellow]interrupted:[/] the PNGs written so far are kept; run the same command to resume.")
        raise typer.Exit(130) from None
    rate = rep.rendered / rep.duration_s if rep.duration_s else 0.0
    console.print(
        f"{spec.name}: {rep.rendered:,} rendered ({rate:,.2f} images/s), {rep.reused:,} already cached, "
        f"{rep.total:,} in all -> {rep.folder}", highlight=False,
    )



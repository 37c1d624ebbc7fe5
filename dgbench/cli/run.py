"""``dgbench run`` (measure models under a protocol) and ``dgbench protocols`` (what can be run).

The command parses flags into a :class:`~dgbench.protocols.RunRequest`, calls
:func:`dgbench.protocols.run` and renders the records; every protocol kind runs the same way.
"""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..config import results_dir
from ..errors import DgbenchError
from ._app import OutFormat, app, console, err_console, note


class Precision(str, Enum):
    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"
    fp16 = "fp16"


class Decode(str, Enum):
    pil = "pil"
    gpu = "gpu"


class EvalMode(str, Enum):
    whole = "whole"
    slide = "slide"


class Gta5Mismatch(str, Enum):
    error = "error"
    resize_label = "resize-label"
    skip = "skip"


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _json_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DgbenchError(f"--model-kwargs {text!r}: not valid JSON ({exc.msg}); e.g. '{{\"depth\": 18}}'") from None
    if not isinstance(value, dict):
        raise DgbenchError(f"--model-kwargs {text!r}: must be a JSON object, e.g. '{{\"depth\": 18}}'")
    return value


@app.command("run")
def run_cmd(
    model: str = typer.Option("ibn_a", "--model", "-m", help="name or alias, 'all', a glob, a,b,c, pkg.module:fn, or timm/NAME"),
    protocol: str = typer.Option("appearance", "--protocol", "-p", help="a registered protocol (`dgbench protocols` lists them)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="a registered dataset, or a cross-domain pair (default: ImageNet if --data/DGBENCH_IMAGENET, else built-in data)"),
    data: Optional[Path] = typer.Option(None, "--data", help="ImageNet validation folder (any of the three layouts)"),
    shifts: Optional[list[str]] = typer.Option(None, "--shifts", help="only these shifts or families (comma-separated or repeated)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N images only (recorded)"),
    subset: Optional[int] = typer.Option(None, "--subset", min=1, help="fixed class-balanced subset of N images (recorded)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda (under torchrun: each rank's own GPU), cuda:1 ..."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, help="data-loading processes (default: by device)"),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="fp32 (TF32 off), tf32, bf16 or fp16 autocast (recorded)"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last"),
    results: Optional[Path] = typer.Option(None, "--results", help="results directory (default $DGBENCH_RESULTS or ./results)"),
    force: bool = typer.Option(False, "--force", help="recompute results already stored"),
    skip_corrupt: bool = typer.Option(False, "--skip-corrupt", help="skip undecodable images (counted and recorded) instead of failing"),
    decode: Decode = typer.Option(Decode.pil, "--decode", help="pil: exact, in the loader workers; gpu: nvJPEG + resize on the device (faster, not bit-exact, recorded)"),
    compile_model: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the model (same results up to float rounding)"),
    fmt: OutFormat = typer.Option(OutFormat.rich, "--format", help="rich table, or the run's records as JSON lines"),
    metric: Optional[str] = typer.Option(None, "--metric", help="table metric, e.g. top1, top5, miou (default: the protocol's)"),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", help="published weights, or random init (seeded)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="load this checkpoint instead of the published weights"),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", help="constructor keywords as JSON, e.g. '{\"ibn_ratio\": 0.25}'"),
    seed: int = typer.Option(0, "--seed", help="seed of random-weight models (recorded)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    data_c: Optional[Path] = typer.Option(None, "--data-c", help="corruption protocols: read the published ImageNet-C tree (<corruption>/<severity>/<wnid>/*.JPEG) instead of rendering"),
    checkpoint_a: Optional[Path] = typer.Option(None, "--checkpoint-a", help="cross-domain: the model trained on the pair's first domain"),
    checkpoint_b: Optional[Path] = typer.Option(None, "--checkpoint-b", help="cross-domain: the model trained on the pair's second domain"),
    cityscapes: Optional[Path] = typer.Option(None, "--cityscapes", "--cityscapes-root", help="Cityscapes root (default $DGBENCH_CITYSCAPES)"),
    gta5: Optional[Path] = typer.Option(None, "--gta5", "--gta5-root", help="GTA5 root (default $DGBENCH_GTA5)"),
    eval_mode: Optional[EvalMode] = typer.Option(None, "--eval-mode", help="segmentation inference: whole image (default) or sliding window"),
    crop: Optional[str] = typer.Option(None, "--crop", help="sliding-window crop: H or HxW pixels (default 769)"),
    stride: Optional[str] = typer.Option(None, "--stride", help="sliding-window stride: H or HxW pixels (default 513)"),
    flip: bool = typer.Option(False, "--flip/--no-flip", help="segmentation: average with the mirrored image"),
    eval_scale: Optional[float] = typer.Option(None, "--eval-scale", min=0.01, help="segmentation: image scale before inference (default 1)"),
    save_predictions: Optional[Path] = typer.Option(None, "--save-predictions", help="segmentation: write labelId/trainId/colour PNGs here"),
    gta5_mismatch: Optional[Gta5Mismatch] = typer.Option(None, "--gta5-mismatch", help="GTA5 label maps whose size differs from their image (default error)"),
    gta5_split_file: Optional[Path] = typer.Option(None, "--gta5-split-file", help="GTA5 split: split.mat or a text list (default <root>/split.mat)"),
    fractions: Optional[str] = typer.Option(None, "--fractions", help="finetune: fractions of the target's train split, e.g. 0.1,0.2,0.3,1.0 (default: the protocol's)"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="finetune: seeds of the subsets and training, e.g. 0,1,2 (default: the protocol's)"),
    intervals: bool = typer.Option(True, "--intervals/--no-intervals", help="appearance, cross-domain segmentation: 95 % intervals in the table (default on; Wilson for errors, bootstrap over images for drops and mIoU)"),
    held_out: Optional[str] = typer.Option(None, "--held-out", help="leave-one-out: only these held-out domains, comma-separated (default: each in turn)"),
    trials: Optional[int] = typer.Option(None, "--trials", help="leave-one-out: trials (splits and hyperparameter draws; default: the protocol's)"),
    hparam_sets: Optional[int] = typer.Option(None, "--hparam-sets", help="leave-one-out: hyperparameter sets per trial, at least 1; set 0 is the defaults, sets 1.. random draws (default: the protocol's)"),
    algorithms: Optional[str] = typer.Option(None, "--algorithms", help="leave-one-out: training algorithms, comma-separated: erm, mixstyle (default: the protocol's)"),
    no_outcomes: bool = typer.Option(False, "--no-outcomes", help="appearance, cross-domain segmentation: do not keep per-image outcomes (segmentation: per-image confusion counts) beside the records (they feed `dgbench compare` and the intervals of drops and mIoU)"),
) -> None:
    """Measure models under a protocol and print the result in the paper's table shape.

    `--protocol appearance` (Table 1) runs every shift on one dataset; `--protocol cross-domain`
    (Table 6) evaluates the models trained on each domain of a pair on both: `--dataset digits`,
    `digit-scenes` (shipped checkpoints) or `cityscapes-gta5` (your `--checkpoint-a` and `--checkpoint-b`).
    """
    from ..protocols import RunRequest
    from ..protocols import run as run_protocol

    roots = {k: str(v) for k, v in (("cityscapes", cityscapes), ("gta5", gta5)) if v is not None}
    options = dict(
        data_c=data_c, checkpoint_a=checkpoint_a, checkpoint_b=checkpoint_b, roots=roots or None, eval_mode=eval_mode and eval_mode.value,
        crop=crop, stride=stride, flip=flip, eval_scale=eval_scale, save_predictions=save_predictions,
        gta5_mismatch=gta5_mismatch and gta5_mismatch.value, gta5_split_file=gta5_split_file,
        fractions=fractions, seeds=seeds, held_out=held_out, trials=trials, hparam_sets=hparam_sets, algorithms=algorithms,
        decode=None if decode == Decode.pil else decode.value, compile=compile_model, no_outcomes=no_outcomes,
    )
    request = RunRequest(
        model=model, dataset=dataset, data=data, shifts=_split(shifts), limit=limit, subset=subset, device=device,
        batch_size=batch_size, workers=workers, precision=precision.value, channels_last=channels_last,
        results=results, force=force, skip_corrupt=skip_corrupt, pretrained=pretrained,
        checkpoint=str(checkpoint) if checkpoint else None, model_kwargs=_json_kwargs(model_kwargs), seed=seed,
        progress=progress and fmt == OutFormat.rich, options=options, note=note,
    )
    try:
        summary = run_protocol(protocol, request)
    except KeyboardInterrupt:
        err_console.print("[bold yellow]interrupted:[/] nothing partial was written (results of models that finished "
                          "are stored); run the same command again to resume.")
        raise typer.Exit(130) from None
    if summary.is_main:  # under torchrun every rank holds the same records; rank 0 reports
        _show(summary, fmt, metric, intervals_from=results_dir(results) if intervals and request.store else None)


def _show(summary: Any, fmt: OutFormat, metric: str | None, *, intervals_from: Path | None) -> None:
    """The run's records as JSON lines, or its table (intervals read from ``intervals_from``) and a
    summary line."""
    if fmt == OutFormat.json:
        for rec in summary.records:
            sys.stdout.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        return
    from ..results.tables import render_table

    records = list(summary.records)
    shown = render_table(records, kind=summary.kind, fmt="rich", metric=metric, intervals_from=intervals_from)
    console.print(shown)
    console.print(summary_line(summary), highlight=False)


def summary_line(summary: Any) -> str:
    line = f"{summary.computed} result(s) computed, {summary.reused} reused from the store · dataset {summary.dataset}"
    if summary.images:
        rate = summary.images / summary.duration_s if summary.duration_s else 0.0
        line += f" · {summary.images:,} images decoded in {summary.duration_s:,.1f} s ({rate:,.1f} images/s through every shift)"
    else:
        line += f" · {summary.duration_s:,.1f} s"
    skipped = sum(r.get("skipped_corrupt") or 0 for r in summary.records if r.get("shift") == "origin")
    if skipped:
        line += f" · {skipped} corrupt image(s) skipped"
    return line


@app.command("protocols")
def protocols_cmd(fmt: OutFormat = typer.Option(OutFormat.rich, "--format")) -> None:
    """Every registered protocol: its kind, the datasets it runs on, and its shifts or domain pairs."""
    from ..protocols import list_infos

    infos = list_infos()
    if fmt == OutFormat.json:
        rows = [dict(name=i.name, kind=i.kind, datasets=list(i.datasets), conditions=list(i.conditions),
                     description=i.description, source=i.source) for i in infos]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="dgbench protocols")
    for col in ("protocol", "kind", "datasets", "shifts / pairs", "description"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.kind, ", ".join(i.datasets), ", ".join(i.conditions), i.description)
    console.print(table)

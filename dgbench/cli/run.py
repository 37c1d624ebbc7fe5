"""``dgbench run`` (evaluate models under a protocol's shifts), ``dgbench prepare`` (render the
style caches) and ``dgbench doctor`` (what dgbench finds on this machine, and what is wrong)."""
from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ._app import app, console, err_console


class OutFormat(str, Enum):
    rich = "rich"
    json = "json"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _note(msg: str) -> None:
    err_console.print(f"[yellow]note:[/] {msg}", highlight=False)


@app.command("run")
def run_cmd(
    model: str = typer.Option("ibn_a", "--model", "-m", help="model name or alias, 'all', or a glob pattern"),
    protocol: str = typer.Option("appearance", "--protocol", "-p", help="appearance, appearance-lite, appearance-offline, sweep-rgb, sweep-r, sweep-std, severity"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="a registered dataset (default: ImageNet if --data/DGBENCH_IMAGENET, else the built-in digits)"),
    data: Optional[Path] = typer.Option(None, "--data", help="ImageNet validation folder (any of the three layouts)"),
    shifts: Optional[list[str]] = typer.Option(None, "--shifts", help="only these shifts or families (comma-separated or repeated)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N images only (recorded)"),
    subset: Optional[int] = typer.Option(None, "--subset", min=1, help="fixed class-balanced subset of N images (recorded)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 ..."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, help="data-loading processes (default: by device)"),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="autocast precision (recorded)"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last"),
    results: Optional[Path] = typer.Option(None, "--results", help="results directory (default $DGBENCH_RESULTS or ./results)"),
    force: bool = typer.Option(False, "--force", help="recompute results already stored"),
    skip_corrupt: bool = typer.Option(False, "--skip-corrupt", help="skip undecodable images (counted and recorded) instead of failing"),
    fmt: OutFormat = typer.Option(OutFormat.rich, "--format", help="rich table, or the run's records as JSON lines"),
    metric: Optional[str] = typer.Option(None, "--metric", help="table metric: top1 or top5 (default both)"),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", help="published weights, or random init (seeded)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="load this checkpoint instead of the published weights"),
    seed: int = typer.Option(0, "--seed", help="seed of random-weight models (recorded)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Evaluate models under every shift of a protocol and print the Table-1-shaped result."""
    from ..protocols.appearance import run_protocol

    try:
        summary = run_protocol(
            model, protocol, dataset=dataset, data=data, shifts=_split(shifts), limit=limit, subset=subset,
            device=device, batch_size=batch_size, workers=workers, precision=precision.value,
            channels_last=channels_last, results=results, force=force, skip_corrupt=skip_corrupt,
            pretrained=pretrained, checkpoint=str(checkpoint) if checkpoint else None, seed=seed,
            progress=progress and fmt == OutFormat.rich, note=_note,
        )
    except KeyboardInterrupt:
        err_console.print(
            "[bold yellow]interrupted:[/] nothing partial was written (results of models that finished "
            "are stored); run the same command again to resume."
        )
        raise typer.Exit(130) from None
    from ..engine import dist_info

    rank, world = dist_info()
    if world > 1:  # under torchrun: every rank holds the same (all-reduced) records; rank 0 reports
        import torch.distributed

        torch.distributed.destroy_process_group()
    if rank != 0:
        return
    if fmt == OutFormat.json:
        for rec in summary.records:
            sys.stdout.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        return
    print_table(summary.records, metric)
    skipped = sum(r.get("skipped_corrupt") or 0 for r in summary.records if r.get("shift") == "origin")
    rate = summary.images / summary.duration_s if summary.duration_s and summary.images else 0.0
    line = (
        f"{summary.computed} result(s) computed, {summary.reused} reused from the store · dataset "
        f"{summary.dataset} · {summary.images:,} images decoded in {summary.duration_s:,.1f} s"
    )
    if summary.images:
        line += f" ({rate:,.1f} images/s through every shift)"
    if skipped:
        line += f" · {skipped} corrupt image(s) skipped"
    console.print(line, highlight=False)


def print_table(records: list[dict[str, Any]], metric: str | None = None) -> None:
    """Table 1's shape via the results tables when available, else a minimal table of our own."""
    try:
        from ..results.tables import render_table

        console.print(render_table(records, kind="appearance", fmt="rich", metric=metric))
        return
    except ImportError:
        pass
    shifts = list(dict.fromkeys(r["shift"] for r in records))
    table = Table(title="top-1 / top-5 error % (drop)")
    table.add_column("model")
    for s in shifts:
        table.add_column(s, justify="right")
    for mname in dict.fromkeys(r["model"] for r in records):
        cells = []
        for s in shifts:
            rec = next((r for r in records if r["model"] == mname and r["shift"] == s), None)
            if rec is None:
                cells.append("-")
                continue
            m, d = rec["metrics"], rec.get("drop") or {}
            cell = f"{m['top1_err']:.2f}/{m['top5_err']:.2f}"
            if d:
                cell += f" ({d['top1_err']:.2f}/{d['top5_err']:.2f})"
            cells.append(cell)
        table.add_row(mname, *cells)
    console.print(table)


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
    name, root, note = choose_dataset(dataset, data)
    if note:
        _note(note)
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


# ----------------------------------------------------------------------------- doctor
DoctorRow = tuple[str, str, str, str]  # (what, where dgbench looked, status, details)
_DOCTOR_CHECKS: list[Callable[[], list[DoctorRow]]] = []


def register_doctor_check(fn: Callable[[], list[DoctorRow]]) -> Callable[[], list[DoctorRow]]:
    """Other areas (segmentation datasets...) add their rows to ``dgbench doctor`` with this."""
    _DOCTOR_CHECKS.append(fn)
    return fn


def _imagenet_rows(data: Path | None) -> list[DoctorRow]:
    from ..config import ENV_VARS, data_root
    from ..data.imagenet import scan
    from ..errors import DgbenchError

    root = data_root("imagenet", data)
    where = f"--data {data}" if data else f"${ENV_VARS['imagenet']}" + (f" = {root}" if root else " (unset)")
    if root is None:
        return [("imagenet", where, "not configured", "pass --data DIR or set DGBENCH_IMAGENET to the val folder")]
    try:
        lay = scan(root)
    except DgbenchError as exc:
        return [("imagenet", where, "error", str(exc))]
    n, classes = len(lay.samples), len({c for _, c in lay.samples})
    status = "ok" if (n, classes) == (50000, 1000) else "partial"
    detail = f"layout {lay.kind}: {n:,} images of 50,000, {classes} classes of 1000"
    if lay.label_files:
        detail += "; labels from " + ", ".join(str(p) for p in lay.label_files)
    return [("imagenet", where, status, detail)]


def _weights_rows() -> list[DoctorRow]:
    rows: list[DoctorRow] = []
    try:
        import torch

        from ..models import list_models, model_info
        from ..models.weights import hub_cache_path
    except Exception as exc:  # the zoo is optional for doctor
        return [("model weights", "-", "error", f"model zoo unavailable: {exc}")]
    names = [n for n in list_models(pretrained=True) if model_info(n).pretrained_cfg.url]
    found = [n for n in names if hub_cache_path(model_info(n).pretrained_cfg.url).is_file()]
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    rows.append(("model weights", str(hub), "ok" if found else "none cached",
                 f"{len(found)} of {len(names)} published checkpoints cached" + (": " + ", ".join(found) if found else
                 " (downloaded on first use with --pretrained)")))
    return rows


def _style_rows() -> list[DoctorRow]:
    from ..config import cache_dir
    from ..protocols.style_cache import list_all_caches

    rows: list[DoctorRow] = []
    wdir = cache_dir() / "weights"
    gens = sorted(wdir.glob("*.pth")) if wdir.is_dir() else []
    rows.append(("style generators", str(wdir), "ok" if gens else "none",
                 ", ".join(p.name for p in gens) or "pass --weights to `dgbench prepare monet` (see README)"))
    caches = list_all_caches()
    if not caches:
        rows.append(("style caches", str(cache_dir() / "styles"), "none", "`dgbench prepare monet --data ... --weights ...` builds one"))
    for folder, man, count in caches:
        want = man.get("images_in_dataset")
        status = "ok" if want == count else "incomplete"
        gen = (man.get("generator_sha256") or "no generator")[:12]
        rows.append((f"style cache {man.get('shift')}", str(folder), status,
                     f"{count:,} of {want} images, dataset {man.get('dataset')}, generator {gen}"))
    return rows


def _results_rows(results: Path | None) -> list[DoctorRow]:
    from ..config import results_dir
    from ..results.store import ResultStore

    root = results_dir(results)
    if not root.is_dir():
        return [("results", str(root), "empty", "created by the first `dgbench run`")]
    store = ResultStore(root)
    rows: list[DoctorRow] = []
    for f in store.files():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            n = len(store.records(f.stem))
        status = "ok" if not caught else "damaged lines"
        rows.append((f"results {f.stem}", str(f), status, f"{n} records" + (f"; {len(caught)} damaged line(s) skipped" if caught else "")))
    return rows or [("results", str(root), "empty", "no result files")]


def _spec_rows() -> list[DoctorRow]:
    from ..errors import DgbenchError
    from ..protocols import load_specs, spec_dirs

    where = ", ".join(str(d) for d in spec_dirs())
    try:
        reg = load_specs()
    except DgbenchError as exc:
        return [("shift/protocol specs", where, "error", str(exc))]
    return [("shift/protocol specs", where, "ok", f"{len(reg.shifts)} shifts, {len(reg.families)} families, {len(reg.protocols)} protocols")]


def _dataset_rows() -> list[DoctorRow]:
    from ..data.base import list_datasets

    return [("registered datasets", "dgbench.data", "ok", ", ".join(list_datasets()))]


@app.command("doctor")
def doctor_cmd(
    data: Optional[Path] = typer.Option(None, "--data", help="an ImageNet folder to check instead of DGBENCH_IMAGENET"),
    results: Optional[Path] = typer.Option(None, "--results"),
    fmt: OutFormat = typer.Option(OutFormat.rich, "--format"),
) -> None:
    """Every dataset root, weight file and cache dgbench knows: where it looked, what it found, what is wrong."""
    rows: list[DoctorRow] = []
    checks: list[Callable[[], list[DoctorRow]]] = [
        _spec_rows, _dataset_rows, lambda: _imagenet_rows(data), _weights_rows, _style_rows,
        lambda: _results_rows(results), *_DOCTOR_CHECKS,
    ]
    for check in checks:
        try:
            rows += check()
        except Exception as exc:  # one broken check must not hide the others
            rows.append((getattr(check, "__name__", "check"), "-", "error", f"{type(exc).__name__}: {exc}"))
    if fmt == OutFormat.json:
        sys.stdout.write(json.dumps([dict(zip(("what", "where", "status", "details"), r)) for r in rows], indent=2) + "\n")
        return
    table = Table(title="dgbench doctor")
    for col in ("what", "where dgbench looked", "status", "details"):
        table.add_column(col, overflow="fold")
    colour = {"ok": "green", "error": "red", "partial": "yellow", "incomplete": "yellow", "damaged lines": "red"}
    for what, where, status, details in rows:
        table.add_row(what, where, f"[{colour.get(status, 'dim')}]{status}[/]", details)
    console.print(table)
    if os.environ.get("DGBENCH_OFFLINE"):
        console.print("DGBENCH_OFFLINE is set: nothing will be downloaded.")

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

from ..errors import DgbenchError, UnknownNameError
from ._app import app, console, err_console


class OutFormat(str, Enum):
    rich = "rich"
    json = "json"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class EvalMode(str, Enum):
    whole = "whole"
    slide = "slide"


class Gta5Mismatch(str, Enum):
    error = "error"
    resize_label = "resize-label"
    skip = "skip"


CROSS_DOMAIN = "cross-domain"


def _split(values: Optional[list[str]]) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _note(msg: str) -> None:
    err_console.print(f"[yellow]note:[/] {msg}", highlight=False)


@app.command("run")
def run_cmd(
    model: str = typer.Option("ibn_a", "--model", "-m", help="model name or alias, 'all', or a glob pattern"),
    protocol: str = typer.Option("appearance", "--protocol", "-p", help="appearance, appearance-lite, appearance-offline, sweep-rgb, sweep-r, sweep-std, severity, cross-domain"),
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
    checkpoint_a: Optional[Path] = typer.Option(None, "--checkpoint-a", help="cross-domain cityscapes-gta5: the model trained on Cityscapes"),
    checkpoint_b: Optional[Path] = typer.Option(None, "--checkpoint-b", help="cross-domain cityscapes-gta5: the model trained on GTA5"),
    cityscapes: Optional[Path] = typer.Option(None, "--cityscapes", "--cityscapes-root", help="Cityscapes root (default $DGBENCH_CITYSCAPES)"),
    gta5: Optional[Path] = typer.Option(None, "--gta5", "--gta5-root", help="GTA5 root (default $DGBENCH_GTA5)"),
    eval_mode: EvalMode = typer.Option(EvalMode.whole, "--eval-mode", help="segmentation inference: whole image or sliding window"),
    crop: Optional[str] = typer.Option(None, "--crop", help="sliding-window crop: H or HxW pixels (default 769)"),
    stride: Optional[str] = typer.Option(None, "--stride", help="sliding-window stride: H or HxW pixels (default 513)"),
    flip: bool = typer.Option(False, "--flip/--no-flip", help="segmentation: average with the mirrored image"),
    eval_scale: float = typer.Option(1.0, "--eval-scale", min=0.01, help="segmentation: image scale before inference"),
    save_predictions: Optional[Path] = typer.Option(None, "--save-predictions", help="segmentation: write labelId/trainId/colour PNGs here"),
    gta5_mismatch: Gta5Mismatch = typer.Option(Gta5Mismatch.error, "--gta5-mismatch", help="GTA5 label maps whose size differs from their image"),
    gta5_split_file: Optional[Path] = typer.Option(None, "--gta5-split-file", help="GTA5 split: split.mat or a text list (default <root>/split.mat)"),
) -> None:
    """Evaluate models under every shift of a protocol and print the Table-1-shaped result.

    `--protocol cross-domain` evaluates the models trained on each domain of a pair on both
    (the paper's Table 6): `--dataset digits` (classification, shipped checkpoints),
    `digit-scenes` (segmentation, shipped checkpoints) or `cityscapes-gta5` (segmentation, your
    `--checkpoint-a` (Cityscapes) and `--checkpoint-b` (GTA5)).
    """
    from ..protocols.appearance import run_protocol

    if protocol == CROSS_DOMAIN:
        seg = dict(
            checkpoint_a=checkpoint_a, checkpoint_b=checkpoint_b, cityscapes=cityscapes, gta5=gta5,
            eval_mode=eval_mode.value, crop=crop, stride=stride, flip=flip, eval_scale=eval_scale,
            save_predictions=save_predictions, gta5_mismatch=gta5_mismatch.value, gta5_split_file=gta5_split_file,
        )
        unused = [flag for flag, given in (
            ("--shifts", shifts), ("--subset", subset), ("--checkpoint", checkpoint), ("--no-pretrained", not pretrained),
            ("--skip-corrupt", skip_corrupt), ("--workers", workers is not None),
            ("--precision", precision != Precision.fp32),
        ) if given]
        if unused:
            raise DgbenchError(f"{', '.join(unused)}: not used by the cross-domain protocol")
        _run_cross_domain(model, dataset, data, seg, limit=limit, device=device, batch_size=batch_size,
                          results=results, force=force, fmt=fmt, metric=metric, progress=progress)
        return
    _check_protocol(protocol)
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


def _check_protocol(name: str) -> None:
    """Unknown protocol names get suggestions among the spec protocols and cross-domain."""
    from ..protocols import registry

    known = registry().protocols
    if name not in known:
        raise UnknownNameError("protocol", name, [*known, CROSS_DOMAIN])


def _size(text: str | None, flag: str, default: tuple[int, int]) -> tuple[int, int]:
    if text is None:
        return default
    try:
        parts = [int(v) for v in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise DgbenchError(f"{flag} {text!r}: expected H or HxW in pixels, e.g. 769 or 769x769")
    return (parts[0], parts[-1])


def _run_cross_domain(model: str, dataset: str | None, data: Path | None, seg: dict[str, Any], *, limit: int | None,
                      device: str, batch_size: int, results: Path | None, force: bool, fmt: OutFormat,
                      metric: str | None, progress: bool) -> None:
    """``dgbench run --protocol cross-domain``: the 2x2 of a domain pair (Table 6's shape)."""
    import time

    from ..engine import resolve_device
    from ..protocols.cross_domain import cross_domain_dataset, cross_domain_pairs, run_cross_domain
    from ..protocols.segmentation import run_builtin_scenes

    if data is not None:
        raise DgbenchError(
            f"--data is an ImageNet folder, which has no second domain for the cross-domain protocol; "
            f"pass --dataset, one of: {cross_domain_pairs()}"
        )
    seg_given = [f"--{k.replace('_', '-')}" for k in ("checkpoint_a", "checkpoint_b", "cityscapes", "gta5", "crop", "stride", "gta5_split_file")
                 if seg[k] is not None]
    if dataset is None:
        dataset = "cityscapes-gta5" if seg["checkpoint_a"] or seg["checkpoint_b"] else "digits"
        if dataset == "digits":
            _note("no --dataset: using the built-in digits <-> typeset-digits pair "
                  f"(cross-domain datasets: {cross_domain_pairs()})")
    task, pair = cross_domain_dataset(dataset)
    if pair != ("cityscapes", "gta5"):
        not_here = seg_given + [f for f, v in (("--eval-mode", seg["eval_mode"] != "whole"), ("--flip", seg["flip"]),
                                              ("--eval-scale", seg["eval_scale"] != 1.0),
                                              ("--gta5-mismatch", seg["gta5_mismatch"] != "error"),
                                              ("--limit", limit is not None)) if v]
        if task == "classification" and seg["save_predictions"] is not None:
            not_here.append("--save-predictions")
        if not_here:
            raise DgbenchError(f"{', '.join(not_here)}: only for --dataset cityscapes-gta5 (the built-in pairs use "
                               "their shipped checkpoints and whole test sets)")
    dev = str(resolve_device(device))
    show = progress and fmt == OutFormat.rich
    before = _stored_count(results)
    t0 = time.perf_counter()
    try:
        if task == "classification":
            records = run_cross_domain(model, dataset, results=results, force=force, device=dev,
                                       batch_size=batch_size, progress=show)
        elif pair[0] == "digit-scenes":
            records = run_builtin_scenes(model, results=results, force=force, device=dev,
                                         save_predictions=seg["save_predictions"], progress=show)
        else:
            records = _run_cityscapes_gta5(model, seg, limit=limit, device=dev, results=results, force=force,
                                           progress=show)
    except KeyboardInterrupt:
        err_console.print("[bold yellow]interrupted:[/] nothing partial was written (models that finished are "
                          "stored); run the same command again to resume.")
        raise typer.Exit(130) from None
    if fmt == OutFormat.json:
        for rec in records:
            sys.stdout.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        return
    from ..results.tables import render_table

    console.print(render_table(records, kind=CROSS_DOMAIN, fmt="rich", metric=metric))
    computed = _stored_count(results) - before
    console.print(f"{computed} result(s) computed, {len(records) - computed} reused from the store · "
                  f"{' <-> '.join(pair)} · {time.perf_counter() - t0:,.1f} s", highlight=False)


def _stored_count(results: Path | None) -> int:
    from ..config import results_dir
    from ..results.store import ResultStore

    return sum(1 for _ in ResultStore(results_dir(results)).iter_records(CROSS_DOMAIN))


def _run_cityscapes_gta5(model: str, seg: dict[str, Any], *, limit: int | None, device: str,
                         results: Path | None, force: bool, progress: bool) -> list[dict[str, Any]]:
    from ..config import results_dir
    from ..data.seg_base import QuirkPolicy
    from ..models.registry import resolve_name
    from ..protocols.segmentation import build_eval_dataset, run_cross_domain_segmentation
    from ..results.store import ResultStore

    missing = [f for f, k in (("--checkpoint-a (trained on Cityscapes)", "checkpoint_a"),
                              ("--checkpoint-b (trained on GTA5)", "checkpoint_b")) if seg[k] is None]
    if missing:
        raise DgbenchError(f"cross-domain cityscapes-gta5 needs {' and '.join(missing)}: the authors released no "
                           "segmentation weights; `dgbench train --task segmentation` makes them")
    for k in ("checkpoint_a", "checkpoint_b"):
        if not Path(seg[k]).is_file():
            raise DgbenchError(f"--{k.replace('_', '-')} {seg[k]}: no such file")
    if model == "all" or any(c in model for c in "*?[") or "," in model:
        raise DgbenchError("cross-domain cityscapes-gta5 evaluates one model (the one --checkpoint-a/-b hold); "
                           f"got --model {model!r}")
    name = model if model.startswith("deeplab_") else f"deeplab_{resolve_name(model)}"
    resolve_name(name)  # unknown names: suggestions
    crop = _size(seg["crop"], "--crop", (769, 769))
    stride = _size(seg["stride"], "--stride", (513, 513))
    cs = build_eval_dataset("cityscapes", seg["cityscapes"])
    gta = build_eval_dataset("gta5", seg["gta5"], split_file=seg["gta5_split_file"],
                             policy=QuirkPolicy(size_mismatch=seg["gta5_mismatch"]))
    return run_cross_domain_segmentation(
        name, {"cityscapes": str(seg["checkpoint_a"]), "gta5": str(seg["checkpoint_b"])},
        {"cityscapes": cs, "gta5": gta}, device=device, mode=seg["eval_mode"], scale=seg["eval_scale"],
        crop_size=crop, stride=stride, flip=seg["flip"], save_predictions=seg["save_predictions"], limit=limit,
        progress=progress, store=ResultStore(results_dir(results)), force=force,
    )


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
    caches = list_all_caches()
    # Generators are wherever the user keeps them (a URL goes to torch hub's cache): report the
    # ones the style caches were rendered with, and whether each file is still there.
    sources = sorted({m["generator_source"] for _, m, _ in caches if m.get("generator_source")})
    if not sources:
        rows.append(("style generators", "style cache manifests", "none",
                     "pass --weights to `dgbench prepare monet` (see README)"))
    for src in sources:
        local = not src.startswith(("http://", "https://", "file://"))
        found = Path(src).expanduser().is_file() if local else None
        rows.append(("style generator", src, "ok" if found in (True, None) else "missing",
                     "used by a style cache" + ("" if found is not False else "; the file is gone (re-renders need it)")))
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

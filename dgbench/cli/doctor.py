"""``dgbench doctor``: every dataset root, weight file, cache and spec dgbench knows, and what is wrong.

Other areas add rows with :func:`register_doctor_check` (the segmentation datasets do).
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ._app import OutFormat, app, console

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


# Roots with a check of their own (ImageNet above; Cityscapes and GTA5 register theirs) or no data.
_OWN_ROWS = {"imagenet", "cityscapes", "gta5", "results", "cache", "offline"}


def _data_root_rows() -> list[DoctorRow]:
    """Every other data root's variable (natural shifts, cue conflict, the multi-domain sets):
    whether it is set and names a folder; the layout itself is checked when a run loads it."""
    from ..config import ENV_VARS, data_root

    rows: list[DoctorRow] = []
    for name, var in ENV_VARS.items():
        if name in _OWN_ROWS:
            continue
        root = data_root(name)
        if root is None:
            rows.append((name, f"${var} (unset)", "not configured", f"set {var} to use it (docs/data.md)"))
        elif not root.is_dir():
            rows.append((name, f"${var} = {root}", "error", f"{root} is not a folder; point {var} at the dataset's root"))
        else:
            rows.append((name, f"${var} = {root}", "ok", "a folder; its layout is checked when a run loads it"))
    return rows


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
                     "pass --weights to `dgbench prepare monet` (see docs/appearance.md)"))
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
    from ..errors import DgbenchError
    from ..results.store import ResultStore

    try:
        root = results_dir(results)
    except DgbenchError as exc:  # the doctor reports what is wrong instead of stopping at it
        return [("results", str(results or "$DGBENCH_RESULTS"), "error", str(exc))]
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
        _spec_rows, _dataset_rows, lambda: _imagenet_rows(data), _data_root_rows, _weights_rows, _style_rows,
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

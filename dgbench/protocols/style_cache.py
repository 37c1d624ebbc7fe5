"""The rendered-image cache of the image shifts (Monet, cv-stylize, corruptions): render once, read many times.

Layout (under ``dgbench.config.cache_dir()``, i.e. ``$DGBENCH_CACHE`` or ``~/.cache/dgbench``)::

    styles/<shift>/<renderer id>/<preprocessing>/<dataset>-<fingerprint[:16]>/
        manifest.json            generator sha256 and source, preprocessing, dataset, shift spec
        <sample id>.png          one lossless PNG per image (the shifted model-input crop)

* ``renderer id`` is the generator file's sha256 (first 16 hex digits) for CycleGAN shifts, or a
  hash of the parameters for ``cv_stylize`` and ``corruption`` (for a corruption they include the
  corruption library's name and version, the severity and the seed, see :func:`pin`): a different
  generator or library version never reuses old renderings.
* ``preprocessing`` is ``r<resize>-c<crop>-<interpolation>``: renderings are of the model's input
  crop, so another geometry is another cache.
* the dataset part is the content fingerprint of the whole tree (before ``--limit``/``--subset``),
  so a partial prepare is completed by a later one (resumable: existing PNGs are kept; each PNG is
  written to a temporary name and renamed, so an interrupted write leaves no damaged file).

Resolution: the generator is applied to the model's input crop itself (shorter side resized to
256, center crop 224, as for every other shift). That is the scale CycleGAN was trained at (photos
resized to 286 and randomly cropped to 256, so objects have about the size they have in a
256-resized ImageNet image), the generator is fully convolutional (224 is divisible by 4, so its
two stride-2 stages invert exactly), and the model sees exactly the generator's pixels with no
second resampling. Rendering the full image instead would cost ~1.5x more for pixels the crop
discards.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import cache_dir
from ..data.base import Preprocess
from ..errors import DgbenchError, SpecError
from ..results.outcomes import order_hash
from ..results.record import fingerprint
from ..shifts import ShiftSpec, check_params, render_image_shift

# Kinds rendered by dgbench itself (no weights to fetch): `rendered_source` renders what the cache lacks.
SELF_RENDERED = ("cv_stylize", "corruption")


def sample_id(dataset: Any, index: int) -> str:
    """The dataset's stable id of sample ``index`` (its ``sample_id``), else the zero-padded index."""
    fn = getattr(dataset, "sample_id", None)
    return fn(index) if fn is not None else f"{index:08d}"


def sample_order(dataset: Any) -> str:
    """The hash of the dataset's sample ids in order: per-image outcome files pair image by image when it agrees."""
    return order_hash(sample_id(dataset, i) for i in range(len(dataset)))


def pin(spec: ShiftSpec) -> ShiftSpec:
    """The spec as rendered: a corruption gets the library's name and version (recorded, and keying
    the cache); its parameter values are checked here, naming the file the shift came from."""
    if spec.kind != "corruption":
        return spec
    problem = check_params(spec.kind, spec.params)
    if problem:
        raise SpecError(f"{spec.source or 'shift'}: {spec.name}: {problem}")
    from .. import corruptions

    return spec.with_params(library=corruptions.LIBRARY, library_version=corruptions.library_version())


def renderer_id(spec: ShiftSpec, generator_sha256: str | None = None) -> str:
    if spec.kind == "cyclegan":
        if not generator_sha256:
            raise ValueError("a CycleGAN cache is keyed by its generator's sha256")
        return generator_sha256[:16]
    return "params-" + fingerprint(spec.params)[:16]


def prep_tag(p: Preprocess) -> str:
    return f"r{p.resize_size}-c{p.crop_size}-{p.interpolation}"


def dataset_tag(dataset: Any) -> str:
    return f"{dataset.name}-{dataset.fingerprint()[:16]}"


def cache_path(spec: ShiftSpec, dataset: Any, preprocess: Preprocess, generator_sha256: str | None = None,
               root: Path | None = None) -> Path:
    root = root or cache_dir()
    return root / "styles" / spec.name / renderer_id(spec, generator_sha256) / prep_tag(preprocess) / dataset_tag(dataset)


def png_path(folder: Path, sid: str) -> Path:
    return folder / f"{sid}.png"


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def write_png(path: Path, crop: torch.Tensor) -> None:
    """Lossless, atomic (temporary name + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(crop.permute(1, 2, 0).contiguous().numpy()).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def missing(folder: Path, dataset: Any, indices: list[int] | None = None) -> list[int]:
    idx = range(len(dataset)) if indices is None else indices
    return [i for i in idx if not png_path(folder, sample_id(dataset, i)).is_file()]


@dataclass
class CachedStyle:
    """Image-shift source reading renderings from a cache folder (picklable: runs in workers).

    With ``spec`` set (``cv_stylize``, ``corruption``), a missing PNG is computed on the fly instead.
    """

    folder: Path | None
    spec: ShiftSpec | None = None

    def __call__(self, dataset: Any, index: int, crop: torch.Tensor) -> torch.Tensor:
        if self.folder is not None:
            path = png_path(self.folder, sample_id(dataset, index))
            if path.is_file():
                out = read_png(path)
                if out.shape != crop.shape:
                    raise DgbenchError(f"{path}: cached rendering is {tuple(out.shape)}, the crop is {tuple(crop.shape)}; delete the cache")
                return out
            if self.spec is None:
                raise DgbenchError(f"{path}: missing from the style cache")
        assert self.spec is not None
        return render_image_shift(self.spec, crop, sample_id(dataset, index))


def write_manifest(folder: Path, spec: ShiftSpec, dataset: Any, preprocess: Preprocess,
                   generator_sha256: str | None, generator_source: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "shift": spec.name,
        "shift_spec": spec.to_dict(),
        "generator_sha256": generator_sha256,
        "generator_source": generator_source,
        "preprocessing": preprocess.to_dict(),
        "resolution": f"{spec.kind} applied to the model's input crop (resize shorter side, center crop)",
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint(),
        "images_in_dataset": len(dataset),
        "format": "PNG (lossless), one per image, named <sample id>.png",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))


def find_caches(spec: ShiftSpec, dataset: Any, preprocess: Preprocess, root: Path | None = None) -> list[Path]:
    """Cache folders of ``spec`` for this dataset and preprocessing, newest manifest first."""
    base = (root or cache_dir()) / "styles" / spec.name
    if not base.is_dir():
        return []
    found = [d / prep_tag(preprocess) / dataset_tag(dataset) for d in base.iterdir() if d.is_dir()]
    found = [f for f in found if (f / "manifest.json").is_file()]
    return sorted(found, key=lambda f: (f / "manifest.json").stat().st_mtime, reverse=True)


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def list_all_caches(root: Path | None = None) -> list[tuple[Path, dict[str, Any], int]]:
    """Every cache folder with its manifest and PNG count (for ``dgbench doctor``)."""
    base = (root or cache_dir()) / "styles"
    out = []
    if base.is_dir():
        for man in sorted(base.glob("*/*/*/*/manifest.json")):
            try:
                data = json.loads(man.read_text())
            except (OSError, ValueError):
                data = {"error": "unreadable manifest"}
            out.append((man.parent, data, sum(1 for _ in man.parent.rglob("*.png"))))
    return out


@dataclass
class PrepareReport:
    folder: Path
    rendered: int
    reused: int
    total: int
    generator_sha256: str | None
    duration_s: float
    spec: ShiftSpec  # as rendered (see `pin`)


class _CropView(torch.utils.data.Dataset):
    """The crops still to render; with ``spec`` (a self-rendered kind) rendered here, in the worker,
    so the CPU-bound filters run on every loader worker instead of the main process alone."""

    def __init__(self, dataset: Any, indices: list[int], spec: ShiftSpec | None = None):
        self.dataset, self.indices, self.spec = dataset, indices, spec

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        idx = self.indices[i]
        crop = self.dataset[idx][0]
        if self.spec is not None:
            crop = render_image_shift(self.spec, crop, sample_id(self.dataset, idx))
        return idx, crop


def prepare(
    spec: ShiftSpec,
    dataset: Any,
    preprocess: Preprocess,
    *,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 8,
    workers: int | None = None,
    progress: bool = True,
    root: Path | None = None,
) -> PrepareReport:
    """Render ``spec`` for every image of ``dataset`` that the cache lacks (resumable).

    CycleGAN shifts need ``weights`` (a ``latest_net_G.pth`` path or URL); the cache folder is keyed
    by the file's sha256, so another generator renders into another folder. A KeyboardInterrupt
    leaves every PNG written so far intact; the next call renders only the rest.
    """
    import time

    from ..runtime import default_workers, progress_bar, resolve_device

    dev = resolve_device(device)
    gen = None
    sha = src = None
    if spec.kind == "cyclegan":
        if not weights:
            raise DgbenchError(
                f"dgbench prepare {spec.name} needs --weights: the CycleGAN generator (e.g. the authors' "
                "style_monet latest_net_G.pth; see docs/appearance.md, 'The Monet generator')"
            )
        from ..models.style import load_style_generator

        gen = load_style_generator(weights).to(dev)
        sha, src = gen.sha256, str(weights)  # type: ignore[attr-defined]
    elif spec.kind not in SELF_RENDERED:
        raise DgbenchError(f"shift {spec.name!r} ({spec.kind}) is computed on the batch; it has nothing to prepare")
    spec = pin(spec)
    folder = cache_path(spec, dataset, preprocess, sha, root)
    write_manifest(folder, spec, dataset, preprocess, sha, src)
    todo = missing(folder, dataset)
    total = len(dataset)
    t0 = time.perf_counter()
    if todo:
        nw = default_workers(dev) if workers is None else workers
        view = _CropView(dataset, todo, None if gen is not None else spec)
        loader = torch.utils.data.DataLoader(view, batch_size=batch_size, num_workers=nw, shuffle=False)
        with progress_bar(progress, len(todo), f"rendering {spec.name}") as advance:
            for idx, crops in loader:
                if gen is not None:
                    from ..models.style import stylize_batch

                    out = stylize_batch(gen, crops)
                else:
                    out = crops  # rendered by the workers
                for i, o in zip(idx.tolist(), out):
                    write_png(png_path(folder, sample_id(dataset, i)), o)
                advance(len(idx))
    return PrepareReport(folder, len(todo), total - len(todo), total, sha, time.perf_counter() - t0, spec)


def rendered_source(spec: ShiftSpec, dataset: Any, preprocess: Preprocess, *, root: Path | None = None,
                    progress: bool = True, workers: int | None = None) -> tuple[ShiftSpec, CachedStyle]:
    """Source of a self-rendered shift (``cv_stylize``, ``corruption``): render what the cache lacks
    now, so every model of the run (and every later run) reads the PNGs instead of filtering again.

    Returns the spec as rendered (a corruption's names the library version) and the cache reader.
    """
    report = prepare(spec, dataset, preprocess, root=root, progress=progress, workers=workers)
    return report.spec, CachedStyle(report.folder, report.spec)

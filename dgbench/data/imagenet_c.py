"""The published ImageNet-C images as the source of the corruption shifts (``--data-c PATH``).

ImageNet-C (Hendrycks & Dietterich, ICLR 2019) ships as one tar per family, unpacked to
``<root>/<corruption>/<severity>/<wnid>/<ILSVRC2012_val_*.JPEG>``: the 224x224 center crops of
ImageNet val, corrupted and saved as JPEG (quality 85). With ``--data-c`` the corruption shifts
read these files instead of rendering: the numbers are then those of RobustBench's protocol
(the same files, decoded and center-cropped to 224, no resize), while the clean reference still
comes from ImageNet val (``--data``).

Image ``i`` of the val dataset (class ``wnid``, file ``ILSVRC2012_val_X.JPEG``) is
``<root>/<corruption>/<severity>/<wnid>/ILSVRC2012_val_X.JPEG``; every selected image must have
its file, or the run stops naming how many are missing and the first one.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import CorruptImageError, DatasetNotFoundError
from ..shifts import ShiftSpec
from .imagenet import IMAGE_EXTS, SYNSET_RE, synsets

EXPECTED = "expected <root>/<corruption>/<severity 1-5>/<wnid>/<ILSVRC2012_val_*.JPEG> (the published ImageNet-C tars, unpacked)"


def layout(root: str | os.PathLike) -> dict[str, list[int]]:
    """corruption -> the severities present under ``root`` (from the folder names alone)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"--data-c {root}: not a folder; {EXPECTED}")
    out = {}
    for c in sorted(p for p in root.iterdir() if p.is_dir()):
        sev = sorted(int(s.name) for s in c.iterdir() if s.is_dir() and s.name in {"1", "2", "3", "4", "5"})
        if sev:
            out[c.name] = sev
    if not out:
        raise DatasetNotFoundError(f"--data-c {root}: no <corruption>/<severity>/ folders found; {EXPECTED}")
    return out


def _files(folder: Path) -> dict[tuple[str, str], Path]:
    """(wnid, file name) -> path for every image under ``<corruption>/<severity>``."""
    out = {}
    for wdir in os.scandir(folder):
        if wdir.is_dir() and SYNSET_RE.match(wdir.name):
            for e in os.scandir(wdir.path):
                if e.name.lower().endswith(IMAGE_EXTS):
                    out[(wdir.name, e.name)] = Path(e.path)
    return out


def sample_file(dataset: Any, index: int) -> tuple[str, str]:
    """(wnid, file name) of sample ``index`` of an ImageNet val dataset, through selections."""
    while hasattr(dataset, "base") and hasattr(dataset, "indices"):  # appearance.Selection
        dataset, index = dataset.base, dataset.indices[index]
    if not hasattr(dataset, "samples"):
        raise DatasetNotFoundError(f"--data-c reads ImageNet-C for ImageNet val only, not for {getattr(dataset, 'name', dataset)!r}")
    path, label = dataset.samples[index]
    return synsets()[label], Path(path).name


@dataclass
class ImageNetCSource:
    """Image-shift source reading one corruption x severity of the published tree (picklable)."""

    paths: list[Path]  # by dataset index

    def __call__(self, dataset: Any, index: int, crop: torch.Tensor) -> torch.Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except Exception as exc:  # PIL raises many kinds
            raise CorruptImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
        h, w = crop.shape[-2:]
        if im.height < h or im.width < w:
            raise DatasetNotFoundError(f"{path}: {im.width}x{im.height} is smaller than the model's {w}x{h} crop "
                                       "(ImageNet-C is 224x224: use a model with a 224 crop, or render the corruptions instead of --data-c)")
        from torchvision.transforms import functional as TF

        return TF.pil_to_tensor(TF.center_crop(im, [h, w]))  # as RobustBench: CenterCrop(224), no resize


def source_for(spec: ShiftSpec, dataset: Any, root: str | os.PathLike) -> tuple[ShiftSpec, ImageNetCSource]:
    """The spec as run (naming the tree and a fingerprint of its files) and the source of its images."""
    root = Path(root)
    c, s = spec.params["corruption"], spec.params["severity"]
    folder = root / c / str(s)
    if not folder.is_dir():
        have = layout(root)
        raise DatasetNotFoundError(f"--data-c {root}: no {c}/{s}/ folder (found: {', '.join(f'{k} {v}' for k, v in have.items())}); {EXPECTED}")
    files = _files(folder)
    paths, missing = [], []
    for i in range(len(dataset)):
        key = sample_file(dataset, i)
        if key in files:
            paths.append(files[key])
        else:
            missing.append(f"{key[0]}/{key[1]}")
    if missing:
        raise DatasetNotFoundError(f"--data-c {folder}: {len(missing)} of {len(dataset)} selected images have no file there "
                                   f"(first: {missing[0]}); {EXPECTED}")
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.parent.name}/{p.name}\t{p.stat().st_size}\n".encode())
    run = spec.with_params(images="published ImageNet-C files (--data-c)", files_sha256=h.hexdigest()[:16])
    return run, ImageNetCSource(paths)

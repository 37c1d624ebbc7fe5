"""Geirhos et al.'s cue-conflict images (``cue-conflict``), in their official layout, never downloaded.

The set (texture-vs-shape's ``stimuli/style-transfer-preprocessed-512``, the same 1,280 images as
model-vs-human's ``cue-conflict`` dataset) is 16 class folders named by category, each image named
``<shape><i>-<texture><j>.png`` (``airplane1-bicycle2.png``: the shape of airplane image 1 with the
texture of bicycle image 2), in the folder of its shape class. Point dgbench at the folder holding
the 16 class folders with ``--data`` or ``$DGBENCH_CUE_CONFLICT``.

Decisions are made among the 16 categories from a model's 1000 ImageNet logits with
model-vs-human's mapping (``dgbench/assets/cue_conflict_16class.json``; see
:class:`dgbench.metrics.shape_bias.CategoryMap`): the category map is a property of the dataset.
Images are decoded as ImageNet val is (:func:`dgbench.data.imagenet.decode_crop`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..config import data_root
from ..errors import DatasetNotFoundError
from .base import ClassificationDataset, Preprocess, register_dataset
from .imagenet import decode_crop

MAPPING_FILE = Path(__file__).resolve().parent.parent / "assets" / "cue_conflict_16class.json"
NAME_RE = re.compile(r"^(?P<shape>[a-z]+)(?P<i>\d+)-(?P<texture>[a-z]+)(?P<j>\d+)\.png$")
OFFICIAL_IMAGES = 1280
WHERE = ("get the 1,280 images from https://github.com/rgeirhos/texture-vs-shape "
         "(stimuli/style-transfer-preprocessed-512) or model-vs-human's cue-conflict dataset, and pass "
         "--data /path/to/cue-conflict or set DGBENCH_CUE_CONFLICT")


@functools.lru_cache(maxsize=None)
def imagenet_16class() -> dict[str, tuple[int, ...]]:
    """model-vs-human's 16 categories (alphabetical) -> their ImageNet class indices."""
    with open(MAPPING_FILE, encoding="utf-8") as f:
        cats = json.load(f)["categories"]
    return {name: tuple(int(i) for i in idx) for name, idx in cats.items()}


def categories() -> tuple[str, ...]:
    return tuple(imagenet_16class())


def scan(root: Path) -> list[tuple[Path, int, int]]:
    """``(path, shape index, texture index)`` of every image, sorted; one line naming the path
    and what was expected where the tree is not the official layout."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"cue-conflict: no folder {root}; {WHERE}")
    names = categories()
    missing = [c for c in names if not (root / c).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"cue-conflict: {root} lacks class folder(s) {', '.join(missing)}; expected the 16 "
                                   f"folders {', '.join(names)} ({WHERE})")
    index = {c: i for i, c in enumerate(names)}
    out = []
    for c in names:
        for entry in sorted(os.scandir(root / c), key=lambda e: e.name):
            if not entry.is_file() or entry.name.startswith("."):
                continue
            out.append(_parse(root / c / entry.name, c, index))
    if not out:
        raise DatasetNotFoundError(f"cue-conflict: no images under {root}'s class folders; {WHERE}")
    return out


def _parse(path: Path, folder: str, index: dict[str, int]) -> tuple[Path, int, int]:
    m = NAME_RE.match(path.name)
    if m is None or m["shape"] not in index or m["texture"] not in index:
        raise DatasetNotFoundError(f"cue-conflict: {path}: expected a name <shape><i>-<texture><j>.png with both "
                                   "classes among the 16 categories (e.g. airplane1-bicycle2.png)")
    if m["shape"] != folder:
        raise DatasetNotFoundError(f"cue-conflict: {path}: its shape class {m['shape']!r} is not its folder "
                                   f"{folder!r} (images sit in their shape class's folder)")
    return path, index[m["shape"]], index[m["texture"]]


class CueConflict(ClassificationDataset):
    """The official cue-conflict tree as ``(uint8 crop, shape index)``, textures beside."""

    name = "cue-conflict"
    num_classes = 16
    num_outputs = 1000  # ImageNet classifiers' logits, mapped to the 16 categories
    trained_on = None  # the zoo's ImageNet models

    def __init__(self, root: Path, preprocess: Preprocess | None = None):
        self.root = root
        self.preprocess = preprocess or Preprocess()
        self.samples = scan(root)
        mapping = imagenet_16class()
        self.category_names = tuple(mapping)
        self.category_members = tuple(mapping.values())
        self.shape_labels = [s for _, s, _ in self.samples]
        self.texture_labels = [t for _, _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, shape, _ = self.samples[index]
        return decode_crop(path, self.preprocess), shape

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, _, _ in self.samples:
            h.update(f"{path.parent.name}/{path.name}\t{path.stat().st_size}\n".encode())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """sha256 of every image's folder, name and size (the labels are in the names)."""
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "layout": "16 shape-class folders",
                "images_in_tree": len(self), "official_images": OFFICIAL_IMAGES,
                "category_map": MAPPING_FILE.name}


@register_dataset("cue-conflict")
def build_cue_conflict(root: str | os.PathLike | None = None, *, split: str = "val",
                       preprocess: Preprocess | None = None, **_: Any) -> CueConflict:
    """The cue-conflict tree at ``root`` (or ``$DGBENCH_CUE_CONFLICT``)."""
    resolved = data_root("cue-conflict", root)
    if resolved is None:
        raise DatasetNotFoundError(f"no cue-conflict folder given; {WHERE}")
    return CueConflict(resolved, preprocess)

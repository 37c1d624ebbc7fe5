"""What the evaluation engine needs from a classification dataset, and the dataset registry.

A dataset yields *decoded, resized and cropped* images as ``uint8`` tensors ``[3, H, W]`` plus an
integer label. Normalization and appearance shifts happen later, on the batch, in the engine: an
image is decoded once per protocol, never once per shift.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import UnknownNameError


@dataclass(frozen=True)
class Preprocess:
    """Geometry of evaluation preprocessing, read from a model's pretrained config."""

    resize_size: int = 256  # shorter side resized to this
    crop_size: int = 224  # then center-cropped to crop_size x crop_size
    interpolation: str = "bilinear"

    @classmethod
    def from_cfg(cls, cfg: Any) -> "Preprocess":
        return cls(resize_size=cfg.resize_size, crop_size=cfg.input_size[-1], interpolation=cfg.interpolation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClassificationDataset(Dataset):
    """Base class: ``ds[i] -> (uint8 tensor [3, H, W], label)``."""

    name: str = ""
    num_classes: int = 0

    def fingerprint(self) -> str:
        """Content fingerprint: file list + sizes, or the generator's seed and version."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this dataset (root, layout, split, subset...)."""
        return {"name": self.name}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:  # pragma: no cover - abstract
        raise NotImplementedError


def class_balanced_indices(labels: Sequence[int], n: int) -> list[int]:
    """A fixed, class-balanced choice of ``n`` indices, returned in index order.

    Round-robin over the classes in label order, taking each class's samples in index order, so
    the choice depends only on the labels (10,000 of ImageNet val = the first 10 of each class).
    """
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    picked: list[int] = []
    rank = 0
    while len(picked) < n and any(rank < len(v) for v in by_class.values()):
        for c in sorted(by_class):
            if rank < len(by_class[c]) and len(picked) < n:
                picked.append(by_class[c][rank])
        rank += 1
    return sorted(picked)


def indices_sha256(indices: Sequence[int]) -> str:
    """The identity of a subset of a dataset: sha256 of its indices as a JSON list (training's
    config and the fine-tuning records both store it, so both read it here)."""
    return hashlib.sha256(json.dumps([int(i) for i in indices]).encode()).hexdigest()


# name -> builder(root, *, split, preprocess, **options) -> dataset. Classification datasets yield
# (uint8 crop, label); segmentation datasets (uint8 image, int64 trainIds, name).
DatasetBuilder = Callable[..., Any]
_DATASETS: dict[str, DatasetBuilder] = {}
_TASKS: dict[str, str] = {}
TASKS = ("classification", "segmentation")


def register_dataset(name: str, task: str = "classification") -> Callable[[DatasetBuilder], DatasetBuilder]:
    if task not in TASKS:
        raise ValueError(f"dataset task must be one of {TASKS}, got {task!r}")

    def deco(builder: DatasetBuilder) -> DatasetBuilder:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} registered twice")
        _DATASETS[name] = builder
        _TASKS[name] = task
        return builder

    return deco


def dataset_task(name: str) -> str:
    _ensure_loaded()
    if name not in _DATASETS:
        raise UnknownNameError("dataset", name, _DATASETS)
    return _TASKS[name]


def _ensure_loaded() -> None:
    from .. import data  # noqa: F401  (imports the dataset modules)
    from ..plugins import load_group

    load_group("dgbench.datasets")  # datasets of installed packages (see dgbench.plugins)


def list_datasets(task: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _DATASETS if task is None or _TASKS[n] == task)


def build_dataset(
    name: str,
    root: str | os.PathLike | Path | None = None,
    *,
    split: str = "val",
    preprocess: Preprocess | None = None,
    **options: Any,
) -> ClassificationDataset:
    """Build a registered dataset; ``root=None`` lets the builder use its env var or built-in data."""
    _ensure_loaded()
    if name not in _DATASETS:
        raise UnknownNameError("dataset", name, _DATASETS)
    return _DATASETS[name](root, split=split, preprocess=preprocess or Preprocess(), **options)

"""How big a registered model is: parameters and GFLOPs of one forward pass (``dgbench models``).

Counted on the meta device with torch's FlopCounterMode (no weights, no memory), cached per
registry content under ``$DGBENCH_CACHE``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .registry import ModelInfo, model_info


@dataclass(frozen=True)
class ModelStats:
    """Size of a model: parameters and the cost of one forward pass."""

    params: int
    gflops: float | None  # multiply-accumulates / 1e9 of one image at ``input_size`` (None: failed)
    input_size: tuple[int, int, int]


def _stats_fingerprint() -> str:
    """Changes whenever model code or torch changes, so cached sizes are never stale."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256(torch.__version__.encode())
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


_STATS_DISK: dict[str, list] | None = None


def _stats_cache_file() -> "os.PathLike[str]":
    from ..config import cache_dir

    return cache_dir() / f"model_stats-{_stats_fingerprint()}.json"


def _load_stats_cache() -> dict[str, list]:
    global _STATS_DISK
    if _STATS_DISK is None:
        import json

        try:
            with open(_stats_cache_file()) as f:
                _STATS_DISK = dict(json.load(f))
        except (OSError, ValueError):
            _STATS_DISK = {}
    return _STATS_DISK


def _save_stats_cache() -> None:
    import json
    import tempfile
    from pathlib import Path

    path = Path(_stats_cache_file())
    try:  # a cache: failing to write it (read-only home, ...) only costs time next run
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(_STATS_DISK, f)
        os.replace(tmp, path)
    except OSError:
        pass


def _compute_stats(info: ModelInfo, c: int, h: int, w: int) -> tuple[int, float | None]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = info.fn(num_classes=info.pretrained_cfg.num_classes)
    params = sum(p.numel() for p in model.parameters())
    try:
        model.eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, c, h, w, device="meta"))
        return params, counter.get_total_flops() / 2 / 1e9
    except Exception:  # a model that cannot run at this size or on meta: report size only
        return params, None


def model_stats(name: str, image_size: int | None = None, *, use_cache: bool = True) -> ModelStats:
    """Parameter count and GFLOPs of ``name`` at ``image_size`` (default: its pretrained input size).

    Built on the ``meta`` device (no memory, no arithmetic). FLOPs come from
    :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products) and are
    reported as multiply-accumulates (its count / 2), the convention of the ResNet papers and
    torchvision's tables (ResNet-50: 4.1 GFLOPs). Results are cached under the dgbench cache
    directory, keyed by a hash of the model code and torch version, so listing the zoo is fast.
    """
    info = model_info(name)
    c, h, w = info.pretrained_cfg.input_size
    if image_size is not None:
        h = w = image_size
    key = f"{info.name}@{c}x{h}x{w}"
    disk = _load_stats_cache() if use_cache else {}
    if key not in disk:
        disk[key] = list(_compute_stats(info, c, h, w))
        if use_cache:
            _save_stats_cache()
    params, gflops = disk[key]
    return ModelStats(params=int(params), gflops=gflops, input_size=(c, h, w))

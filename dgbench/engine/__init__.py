"""The loops that run models over data, on the :mod:`dgbench.runtime`: protocols and training use them.

* :mod:`.classification`: one decode per image, every appearance shift on the batch, exact
  integer top-k counts (``evaluate``);
* :mod:`.segmentation`: whole-image or sliding-window inference and one confusion matrix
  (``evaluate_segmentation``).
"""
from __future__ import annotations

from ..runtime import PRECISIONS, Runtime, default_workers, dist_info, resolve_device, shard_indices
from .classification import EngineConfig, EvalResult, ImageShiftSource, evaluate, make_loader, normalize_batch
from .segmentation import evaluate_segmentation, normalize, predict_logits, save_prediction

__all__ = [
    "PRECISIONS", "EngineConfig", "EvalResult", "ImageShiftSource", "Runtime", "default_workers", "dist_info",
    "evaluate", "evaluate_segmentation", "make_loader", "normalize", "normalize_batch", "predict_logits",
    "resolve_device", "save_prediction", "shard_indices",
]

"""Old home of segmentation in the protocols, kept so that existing imports keep working.

Its two jobs now have a module each: scoring a folder of predictions is
:mod:`dgbench.protocols.prediction_scoring`; the cross-domain protocol's segmentation task is
:mod:`dgbench.protocols.cross_domain_segmentation` (``run_builtin_scenes`` lives with the
cross-domain kind). Import from those; nothing in dgbench imports this module.
"""
from __future__ import annotations

from .cross_domain import run_builtin_scenes
from .cross_domain_segmentation import (
    DEFAULT_WINDOW,
    SEG_OPTIONS,
    SEGMENTATION,
    Inference,
    builtin_scene_models,
    run_cross_domain_segmentation,
    segmentation_evaluate,
)
from .prediction_scoring import find_gt_files, find_prediction_files, score_predictions

__all__ = [
    "DEFAULT_WINDOW", "SEG_OPTIONS", "SEGMENTATION", "Inference", "builtin_scene_models", "find_gt_files",
    "find_prediction_files", "run_builtin_scenes", "run_cross_domain_segmentation", "score_predictions",
    "segmentation_evaluate",
]

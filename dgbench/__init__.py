"""dgbench: how much does a network lose when the appearance of its input changes?

The public API mirrors the command line; names are imported lazily so ``import dgbench`` (and the
CLI's start-up) stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> module that defines it
_API = {
    "create_model": "dgbench.models",
    "list_models": "dgbench.models",
    "model_info": "dgbench.models",
    "get_pretrained_cfg": "dgbench.models",
    "register_model": "dgbench.models",
    "ResultStore": "dgbench.results.store",
    "load_results": "dgbench.results.frame",
    "render_table": "dgbench.results.tables",
    "publish_leaderboard": "dgbench.results.leaderboard",
    "load_leaderboard": "dgbench.results.leaderboard",
    "check_leaderboard": "dgbench.results.check",
    "check": "dgbench.results.check",
    "compare": "dgbench.results.paired",
    "consistency": "dgbench.results.consistency",
    "load_outcomes": "dgbench.results.outcomes",
    "DgbenchError": "dgbench.errors",
    "score_predictions": "dgbench.protocols.prediction_scoring",
    "evaluate_segmentation": "dgbench.engine",
    "run_cross_domain_segmentation": "dgbench.protocols.cross_domain_segmentation",
    "train_segmentation": "dgbench.train.segmentation",
    "run_protocol": "dgbench.protocols.appearance",
    "evaluate_model": "dgbench.protocols.appearance",
    "evaluate": "dgbench.engine",
    "run": "dgbench.protocols",
    "RunRequest": "dgbench.protocols",
    "list_protocol_infos": "dgbench.protocols",
    "Runtime": "dgbench.runtime",
    "create_external": "dgbench.models.external",
    "load_style_generator": "dgbench.models.style",
    "get_shift": "dgbench.protocols",
    "list_shifts": "dgbench.protocols",
    "list_protocols": "dgbench.protocols",
    "train_classifier": "dgbench.train.classification",
    "run_cross_domain": "dgbench.protocols.cross_domain",
    "load_builtin": "dgbench.builtin.checkpoints",
    "digit_images": "dgbench.builtin.digits",
    "build_dataset": "dgbench.data.base",
    "list_datasets": "dgbench.data.base",
    "run_builtin_scenes": "dgbench.protocols.cross_domain",
    "rerun_leaderboard": "dgbench.protocols.rerun",
}

_RENAMED = {"list_protocol_infos": "list_infos", "load_outcomes": "load"}  # public name -> the module's own name

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'dgbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

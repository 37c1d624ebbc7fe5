"""Models from outside the zoo: an import path to a callable, or a timm model.

* ``pkg.module:build_net`` — any callable returning an ``nn.Module``, called with the JSON
  ``--model-kwargs``. Its preprocessing is the module's ``pretrained_cfg`` attribute when it sets
  one (a :class:`~dgbench.models.registry.PretrainedCfg` or a timm-style dict), else ImageNet's.
* ``timm/<name>`` — ``timm.create_model(name, pretrained=...)`` when timm is installed; mean, std,
  crop and interpolation come from timm's own pretrained config.

Both are tagged like zoo models (``dgbench_name``, ``pretrained_cfg``, ``variant_kwargs``,
``weights_sha256``), so records are fingerprinted the same way: the name is the import path (or
``timm/<name>``), and the weights' identity is the sha256 of the loaded checkpoint file or, for
weights the callable made itself, of the state dict's tensors in key order.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import re
from typing import Any

import torch
from torch import nn

from ..errors import DgbenchError
from .registry import PretrainedCfg

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
TIMM_PREFIX = "timm/"


def is_external(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith(TIMM_PREFIX) or bool(_IMPORT_PATH.match(name)))


def state_dict_sha256(model: nn.Module) -> str | None:
    """A content hash of the weights: key, dtype, shape and bytes of every tensor, in key order
    (None while a lazy module's parameters are still uninitialized: nothing to identify yet)."""
    state = model.state_dict()
    if any(isinstance(t, nn.parameter.UninitializedParameter) for t in state.values()):
        return None
    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        # reshape(-1): a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes;
        # for every other tensor the bytes are the same, so earlier hashes still hold.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cfg_from_timm(cfg: Any) -> PretrainedCfg:
    """timm's pretrained config (a dict or an object with the same fields) as ours."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    base = PretrainedCfg()
    return PretrainedCfg(
        input_size=tuple(get("input_size", base.input_size)),
        mean=tuple(get("mean", base.mean)),
        std=tuple(get("std", base.std)),
        interpolation=get("interpolation", base.interpolation) or base.interpolation,
        crop_pct=float(get("crop_pct", base.crop_pct) or base.crop_pct),
        num_classes=int(get("num_classes", base.num_classes) or base.num_classes),
        source=str(get("hf_hub_id", "") or get("url", "") or "timm"),
    )


def _import_callable(path: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise DgbenchError(f"--model {path}: cannot import module {module!r} ({exc}); is it installed or on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise DgbenchError(f"--model {path}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise DgbenchError(f"--model {path}: {attr!r} is not callable")
    return obj


def _build_callable(path: str, kwargs: dict[str, Any]) -> nn.Module:
    fn = _import_callable(path)
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise DgbenchError(f"--model {path} with --model-kwargs {kwargs}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise DgbenchError(f"--model {path}: returned a {type(model).__name__}, not a torch.nn.Module")
    cfg = getattr(model, "pretrained_cfg", None) or getattr(importlib.import_module(path.partition(":")[0]), "pretrained_cfg", None)
    model.pretrained_cfg = cfg if isinstance(cfg, PretrainedCfg) else (cfg_from_timm(cfg) if cfg else PretrainedCfg())  # type: ignore[assignment]
    return model


def _build_timm(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise DgbenchError(f"--model {TIMM_PREFIX}{name}: timm is not installed (pip install timm)") from None
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:  # timm's message for unknown names is a RuntimeError
        raise DgbenchError(f"--model {TIMM_PREFIX}{name}: {exc}") from None
    model.pretrained_cfg = cfg_from_timm(getattr(model, "pretrained_cfg", {}) or {})
    return model


def create_external(name: str, *, pretrained: bool | str | os.PathLike = True,
                    kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Build an external model; ``pretrained`` may be a checkpoint path to load (strict, weights_only)."""
    kwargs = dict(kwargs or {})
    path_given = isinstance(pretrained, (str, os.PathLike)) and not isinstance(pretrained, bool)
    if name.startswith(TIMM_PREFIX):
        model = _build_timm(name[len(TIMM_PREFIX):], bool(pretrained) and not path_given, kwargs)
    else:
        model = _build_callable(name, kwargs)
    model.dgbench_name = name  # type: ignore[assignment]
    model.variant_kwargs = kwargs  # type: ignore[assignment]
    if path_given:
        from .weights import load_state_dict_strict, read_state_dict, sha256_file

        load_state_dict_strict(model, read_state_dict(pretrained), str(pretrained))
        model.weights_sha256 = sha256_file(pretrained)  # type: ignore[assignment]
    else:
        model.weights_sha256 = state_dict_sha256(model)  # type: ignore[assignment]
    return model

"""Which models a request means, and how to build one: the zoo, outside callables, timm.

``--model`` accepts a registry name or alias, ``all``, a glob, a comma-separated list, an import
path ``pkg.module:fn`` (with ``--model-kwargs``) or ``timm/<name>``; the Python API also takes a
list or an ``nn.Module``. Zoo models are built by :func:`dgbench.models.create_model`, the others by
:mod:`dgbench.models.external`, and all carry the same tags (name, kwargs, weights sha256) that
result records are fingerprinted with.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import DgbenchError, UnknownNameError
from ..models.external import count_outputs, create_external, is_external


def split_names(spec: Any) -> Any:
    """``"a,b"`` -> ``["a", "b"]``; anything else as it is."""
    if isinstance(spec, str) and "," in spec:
        return [s.strip() for s in spec.split(",") if s.strip()]
    return spec


def resolve_models(spec: Any, *, pretrained: bool = True, task: str = "classification") -> list[Any]:
    """``NAME`` / alias, ``all`` (every model of ``task``, with weights when ``pretrained``), a glob,
    a list, an external model (import path or ``timm/``), or an ``nn.Module``."""
    from ..models import list_models, resolve_name

    spec = split_names(spec)
    if isinstance(spec, nn.Module):
        return [spec]
    if not isinstance(spec, str):
        return [n for s in spec for n in resolve_models(s, pretrained=pretrained, task=task)]
    if is_external(spec):
        return [spec]
    if spec == "all":
        return list_models(task=task, pretrained=pretrained)
    try:
        return [resolve_name(spec)]
    except UnknownNameError as exc:
        hits = list_models(spec, task=task) if any(c in spec for c in "*?[") else []
        if not hits:
            raise exc from None
        return hits


def pick_small(spec: Any, known: Sequence[str], to_small: Any, what: str) -> list[str]:
    """Models of a built-in set (``known``) meant by ``spec``: a name/alias, ``all``, a glob, a list."""
    spec = split_names(spec)
    if not isinstance(spec, str):
        return list(dict.fromkeys(n for s in spec for n in pick_small(s, known, to_small, what)))
    if spec == "all":
        return list(known)
    if any(c in spec for c in "*?["):
        hits = [n for n in known if fnmatch.fnmatch(n, spec)]
        if not hits:
            raise DgbenchError(f"no {what} matches {spec!r} (known: {', '.join(known)})")
        return hits
    name = to_small(spec)
    if name not in known:
        raise DgbenchError(f"{spec!r} has no {what}; there are: {', '.join(known)}")
    return [name]


def model_cfg(name: Any) -> Any:
    """A model's pretrained config without building it (zoo names), or None (build to know)."""
    if isinstance(name, nn.Module):
        return name.pretrained_cfg  # type: ignore[attr-defined]
    if is_external(name):
        return None
    from ..models import get_pretrained_cfg

    return get_pretrained_cfg(name)


def build_model(name: Any, *, pretrained: bool = True, checkpoint: str | None = None, seed: int = 0,
                kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Build ``name``; random weights are seeded (and the seed recorded by the caller)."""
    if isinstance(name, nn.Module):
        return name
    torch.manual_seed(seed)  # random-weight runs are reproducible
    if is_external(name):
        return create_external(name, pretrained=checkpoint or pretrained, kwargs=kwargs)
    from ..models import create_model

    return create_model(name, pretrained=checkpoint or pretrained, **(kwargs or {}))


def scored_classes(name: Any, model: nn.Module | None, cfg: Any, kwargs: dict[str, Any] | None) -> int:
    """How many classes a model scores, known before anything is measured: a zoo model's from its
    config (or ``num_classes`` in ``--model-kwargs``), an outside model's from one forward pass
    (``model``: the built outside model), since its config cannot know."""
    if is_external(name) and model is not None:
        return count_outputs(model, tuple(cfg.input_size), name)
    if isinstance(name, nn.Module):
        return int(cfg.num_classes)
    return int((kwargs or {}).get("num_classes", cfg.num_classes))


def refuse_other_classes(name: str, scored: int, dataset: str, classes: int) -> DgbenchError:
    """The one line for a model whose classifier does not fit the dataset: its errors would mean nothing."""
    return DgbenchError(f"--model {name} scores {scored} classes but {dataset} has {classes}: its errors would mean "
                        f"nothing, so nothing was measured; use a model made for {dataset} (e.g. --model-kwargs "
                        f"'{{\"num_classes\": {classes}}}' with --no-pretrained, or a --checkpoint trained on it)")


def weights_source(name: Any, checkpoint: str | None, pretrained: bool) -> str:
    if isinstance(name, nn.Module):
        return "module passed by the caller"
    if checkpoint:
        return str(checkpoint)
    if is_external(name):
        return "built by " + name + (" (timm pretrained)" if name.startswith("timm/") and pretrained else "")
    return "published weights" if pretrained else "random init"


def model_seed(model: nn.Module, seed: int) -> int | None:
    """The seed is part of a result's identity only where it made the weights (random init)."""
    return seed if getattr(model, "weights_sha256", None) is None else None

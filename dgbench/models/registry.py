"""The model registry: every network dgbench knows, with its pretrained configuration as data.

Model modules decorate their constructors with :func:`register_model`; :func:`create_model` builds
one by name (or short alias) and, when asked, loads its weights through :mod:`dgbench.models.weights`.
The pretrained configuration (checkpoint URL and hash, input size, mean/std, interpolation, crop
fraction, source, license) is what the evaluation's preprocessing reads, as timm's configs are.
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..errors import DgbenchError, RefusedNameError, UnknownNameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """How a published checkpoint was made and how its inputs must be prepared."""

    url: str | None = None  # where the weights are published (None: no published weights)
    file: str | None = None  # or a file shipped inside the package, relative to dgbench/assets
    sha256_prefix: str | None = None  # hash prefix as in torch hub file names (name-<prefix>.pth)
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875  # resize the shorter side to input/crop_pct (224/0.875 = 256), then crop
    num_classes: int = 1000
    source: str = ""
    license: str = ""

    @property
    def resize_size(self) -> int:
        return int(round(self.input_size[-1] / self.crop_pct))

    @property
    def has_weights(self) -> bool:
        return bool(self.url or self.file)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry: constructor plus descriptive metadata (used by `dgbench models`)."""

    name: str
    fn: Callable[..., nn.Module]
    family: str  # resnet, resnext, se_resnet, densenet, small, deeplab, ...
    backbone: str  # e.g. resnet50
    variant: str  # baseline, ibn_a, ibn_b, ...
    task: str = "classification"
    pretrained_cfg: PretrainedCfg = field(default_factory=PretrainedCfg)
    aliases: tuple[str, ...] = ()
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}
_REFUSED: dict[str, str] = {}  # names (and aliases) deliberately not built -> why


def refuse_model(name: str, reason: str, aliases: tuple[str, ...] = ()) -> None:
    """Record that ``name`` (and its ``aliases``) is not built, so asking for it gives ``reason``
    instead of "unknown model" (e.g. ``resnet18_ibn_a2``: see :func:`dgbench.models.ibn.unsupported_reason`)."""
    for n in (name, *aliases):
        _REFUSED[n] = reason


def register_model(
    *,
    family: str,
    backbone: str,
    variant: str,
    task: str = "classification",
    pretrained_cfg: PretrainedCfg | None = None,
    aliases: tuple[str, ...] = (),
    name: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model constructor under its function name (or ``name``)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model {key!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelInfo(
            name=key,
            fn=fn,
            family=family,
            backbone=backbone,
            variant=variant,
            task=task,
            pretrained_cfg=pretrained_cfg or PretrainedCfg(),
            aliases=tuple(aliases),
            description=doc[0] if doc else "",
        )
        for alias in aliases:
            if alias in _ALIASES or alias in _REGISTRY:
                raise ValueError(f"alias {alias!r} registered twice")
            _ALIASES[alias] = key
        return fn

    return deco


def _ensure_loaded() -> None:
    # Importing the models package imports every model module, which fills the registry; installed
    # packages add theirs through the "dgbench.models" entry points (see dgbench.plugins).
    from .. import models  # noqa: F401
    from ..plugins import load_group

    load_group("dgbench.models")


def resolve_name(name: str) -> str:
    """The canonical registry name for ``name`` or one of its aliases."""
    _ensure_loaded()
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    if name in _REFUSED:
        raise RefusedNameError("model", name, _REFUSED[name])
    raise UnknownNameError("model", name, list(_REGISTRY) + list(_ALIASES))


def model_info(name: str) -> ModelInfo:
    return _REGISTRY[resolve_name(name)]


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    return model_info(name).pretrained_cfg


def _natural(name: str) -> list[Any]:
    """Sort key putting resnet18 before resnet101 (numbers compare as numbers)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def list_models(pattern: str | None = None, *, pretrained: bool = False, task: str | None = None) -> list[str]:
    """Sorted model names, optionally filtered by a glob ``pattern`` (aliases match too)."""
    _ensure_loaded()
    names = sorted(_REGISTRY, key=_natural)
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        hits = {n for n in names if fnmatch.fnmatch(n, pat)}
        hits |= {_ALIASES[a] for a in _ALIASES if fnmatch.fnmatch(a, pat)}
        names = sorted(hits, key=_natural)
    if pretrained:
        names = [n for n in names if _REGISTRY[n].pretrained_cfg.has_weights]
    if task:
        names = [n for n in names if _REGISTRY[n].task == task]
    return names


def aliases() -> dict[str, str]:
    _ensure_loaded()
    return dict(_ALIASES)


def create_model(
    name: str,
    pretrained: bool | str | os.PathLike = False,
    num_classes: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (``resnet50_ibn_a``) or alias (``ibn_a``).
        pretrained: ``True`` for the published weights (torch hub cache, hash-checked), or a path
            / URL of a checkpoint to load instead. Loading is strict and ``weights_only``.
        num_classes: classifier size; defaults to the pretrained configuration's.
        **kwargs: variant knobs the constructor accepts (``ibn_ratio``, ``ibn_groups``, ...).
    """
    info = model_info(name)
    cfg = info.pretrained_cfg
    try:
        # 0 is a valid request (no classifier: a feature extractor), so only None means "default".
        model = info.fn(num_classes=cfg.num_classes if num_classes is None else num_classes, **kwargs)
    except DgbenchError:  # already one line (e.g. an IBN variant the network cannot take)
        raise
    except Exception as exc:
        if not kwargs:  # the constructor itself failed: a bug, with its traceback
            raise
        from .model_kwargs import kwargs_error

        raise kwargs_error(info, kwargs, exc) from None
    model.dgbench_name = info.name  # type: ignore[assignment]
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    model.variant_kwargs = dict(kwargs)  # type: ignore[assignment]
    model.weights_sha256 = None  # type: ignore[assignment]
    if pretrained:
        from .weights import load_pretrained

        model.weights_sha256 = load_pretrained(model, info, pretrained)  # type: ignore[assignment]
    return model

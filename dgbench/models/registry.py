"""The model registry: every network dgbench knows, with its weights and their metadata as data.

Model modules decorate their constructors with :func:`register_model`; :func:`create_model` builds
one by name (or short alias) and, when asked, loads its weights through :mod:`dgbench.models.weights`.
An architecture may have several sets of weights, each a tag (timm's ``name.tag``):
``create_model("resnet50.tv2_in1k", pretrained=True)`` or ``create_model("resnet50",
pretrained=True, weights="tv2_in1k")``; without a tag, the architecture's default (its first).
Each tag's :class:`~dgbench.models.pretrained.PretrainedCfg` (checkpoint URL and hash, input size,
mean/std, interpolation, crop fraction, source, license, published numbers) is what the
evaluation's preprocessing reads, as timm's configs are.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import DgbenchError, RefusedNameError, UnknownNameError, suggest
from .pretrained import IMAGENET_MEAN, IMAGENET_STD, PretrainedCfg, released_weights  # noqa: F401 (mean/std: re-exported)
from .weights import load_pretrained


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry: constructor plus descriptive metadata (used by `dgbench models`).

    ``weights`` are every released set of weights (the default first); ``pretrained_cfg`` is the
    one selected: the default, or the tag the name asked for (:func:`model_info`)."""

    name: str
    fn: Callable[..., nn.Module]
    family: str  # resnet, resnext, se_resnet, densenet, small, deeplab, ...
    backbone: str  # e.g. resnet50
    variant: str  # baseline, ibn_a, ibn_b, ...
    task: str = "classification"
    pretrained_cfg: PretrainedCfg = field(default_factory=PretrainedCfg)
    aliases: tuple[str, ...] = ()
    description: str = ""
    weights: tuple[PretrainedCfg, ...] = ()

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(w.tag for w in self.weights)

    @property
    def default_tag(self) -> str | None:
        return self.weights[0].tag if self.weights else None

    def weights_for(self, tag: str) -> PretrainedCfg:
        """The weights tagged ``tag``; an unknown tag is one line with the tags there are."""
        for w in self.weights:
            if w.tag == tag:
                return w
        arch = self.pretrained_cfg.architecture or self.name
        if not self.weights:
            raise DgbenchError(f"{arch} has no released weights, so no tag {tag!r}; pass pretrained=<path> "
                               "(`dgbench models --tags` lists every tag)")
        err = UnknownNameError("weights tag", f"{arch}.{tag}", [f"{arch}.{t}" for t in self.tags])
        close = suggest(tag, self.tags)
        err.args = (f"unknown weights tag {tag!r} of {arch}"
                    + (f"; did you mean {', '.join(f'{arch}.{t}' for t in close)}?" if close else "")
                    + f" (its tags: {', '.join(self.tags)}; default {self.default_tag})",)
        raise err


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}
_REFUSED: dict[str, str] = {}  # names (and aliases) deliberately not built -> why


def refuse_model(name: str, reason: str, aliases: tuple[str, ...] = ()) -> None:
    """Record that ``name`` (and its ``aliases``) is not built, so asking for it gives ``reason``
    instead of "unknown model" (e.g. ``resnet18_ibn_a2``: see :func:`dgbench.models.ibn.unsupported_reason`)."""
    for n in (name, *aliases):
        _REFUSED[n] = reason


DEFAULT_TAG = "default"  # the tag of weights registered without one (e.g. a plugin's single checkpoint)


def register_model(
    *,
    family: str,
    backbone: str,
    variant: str,
    task: str = "classification",
    pretrained_cfg: PretrainedCfg | None = None,
    aliases: tuple[str, ...] = (),
    name: str | None = None,
    weights: Sequence[PretrainedCfg] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model constructor under its function name (or ``name``), with its ``weights``
    (each tagged, the default first) or one ``pretrained_cfg``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model {key!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        cfgs = _stamp(key, tuple(weights) or (pretrained_cfg or PretrainedCfg(),))
        released = tuple(c for c in cfgs if c.has_weights)
        _REGISTRY[key] = ModelInfo(
            name=key,
            fn=fn,
            family=family,
            backbone=backbone,
            variant=variant,
            task=task,
            pretrained_cfg=released[0] if released else cfgs[0],
            aliases=tuple(aliases),
            description=doc[0] if doc else "",
            weights=released,
        )
        for alias in aliases:
            if alias in _ALIASES or alias in _REGISTRY:
                raise ValueError(f"alias {alias!r} registered twice")
            _ALIASES[alias] = key
        return fn

    return deco


def _stamp(key: str, cfgs: tuple[PretrainedCfg, ...]) -> tuple[PretrainedCfg, ...]:
    """The configs with their architecture set and, where they hold weights, a tag (unique)."""
    out = tuple(dataclasses.replace(c, architecture=key, tag=(c.tag or DEFAULT_TAG) if c.has_weights else "")
                for c in cfgs)
    tags = [c.tag for c in out if c.has_weights]
    if len(tags) != len(set(tags)):
        raise ValueError(f"model {key!r} registers the weights tags {tags}: each tag once")
    return out


def register_released(fn: Any, *, name: str, family: str, backbone: str, variant: str, doc: str) -> None:
    """Register the zoo constructor ``fn`` as ``name``, with every released weights of it
    (:data:`dgbench.models.pretrained.RELEASED`)."""
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    register_model(family=family, backbone=backbone, variant=variant, weights=released_weights(name), name=name)(fn)


def _ensure_loaded() -> None:
    # Importing the models package imports every model module, which fills the registry; installed
    # packages add theirs through the "dgbench.models" entry points (see dgbench.plugins).
    from .. import models  # noqa: F401
    from ..plugins import load_group

    load_group("dgbench.models")


def split_tag(name: str) -> tuple[str, str | None]:
    """``resnet50.tv2_in1k`` -> ``("resnet50", "tv2_in1k")``; a name without a tag -> ``(name, None)``."""
    arch, dot, tag = name.partition(".")
    return (arch, tag) if dot and tag and arch else (name, None)


def _resolve_architecture(name: str) -> str:
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    if name in _REFUSED:
        raise RefusedNameError("model", name, _REFUSED[name])
    raise UnknownNameError("model", name, list(_REGISTRY) + list(_ALIASES))


def resolve_name(name: str) -> str:
    """The canonical registry name for ``name`` or one of its aliases, with a weights tag
    (``resnet50.tv2_in1k``) kept unless it is the architecture's default: a record of the default
    weights is keyed as before tags existed. An unknown tag is one line naming the tags there are."""
    _ensure_loaded()
    if name in _REGISTRY or name in _ALIASES or name in _REFUSED:
        return _resolve_architecture(name)
    arch, tag = split_tag(name)
    canonical = _resolve_architecture(arch)
    if tag is None:
        return canonical
    info = _REGISTRY[canonical]
    info.weights_for(tag)
    return canonical if tag == info.default_tag else f"{canonical}.{tag}"


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; with a tag, its ``pretrained_cfg`` is that tag's weights."""
    canonical = resolve_name(name)
    if canonical in _REGISTRY:
        return _REGISTRY[canonical]
    arch, tag = split_tag(canonical)
    info = _REGISTRY[arch]
    return dataclasses.replace(info, name=canonical, pretrained_cfg=info.weights_for(tag or ""))


def with_tag(name: str, weights: str) -> str:
    """``name`` selecting the weights tagged ``weights`` (``create_model(..., weights=)``)."""
    arch, tag = split_tag(name) if name not in _REGISTRY else (name, None)
    if tag is not None and tag != weights:
        raise DgbenchError(f"model {name!r} names the weights {tag!r} but weights={weights!r}: give the tag once")
    return f"{arch}.{weights}"


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
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (``resnet50_ibn_a``) or alias (``ibn_a``), optionally with a weights
            tag (``resnet50.tv2_in1k``; ``dgbench models --tags`` lists them).
        pretrained: ``True`` for the published weights of the tag (default: the architecture's
            default tag; torch hub cache, hash-checked), or a path / URL of a checkpoint to load
            instead. Loading is strict and ``weights_only``.
        num_classes: classifier size; defaults to the pretrained configuration's.
        weights: a weights tag, as ``name.tag`` would give it.
        **kwargs: variant knobs the constructor accepts (``ibn_ratio``, ``ibn_groups``, ...).
    """
    info = model_info(name if weights is None else with_tag(name, weights))
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
    # Which released weights ran (None: random init or a checkpoint given by path).
    model.weights_tag = cfg.tag if pretrained is True and cfg.has_weights else None  # type: ignore[assignment]
    if pretrained:
        model.weights_sha256 = load_pretrained(model, cfg, pretrained)  # type: ignore[assignment]
    return model

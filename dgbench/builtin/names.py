"""Which model a name means on the built-in data, decided once.

On a built-in domain the networks are the small ones (:mod:`.small`, and their DeepLabs in
:mod:`.scene_models`): a zoo alias (``ibn_a``), a bare variant (``baseline``, ``a``, ``ibn_ad``),
``resnet`` or ``resnet50`` means the small model of that variant, because the ImageNet-size
networks are not what the built-in benchmark trains or ships. Protocols and trainers ask
:func:`builtin_model_name`; nothing else spells the rule out.
"""
from __future__ import annotations

from ..models.ibn import VARIANTS as _ALL_VARIANTS
from ..models.ibn import unsupported_reason
from ..models.registry import aliases, model_info, resolve_name
from ..models.resnet import BasicBlock
from .domains import DIGIT_DOMAINS, SCENE_DOMAINS

# The variants a one-BasicBlock-per-group net can be (a2 cannot: ibn.unsupported_reason).
VARIANTS: tuple[str, ...] = tuple(v for v in _ALL_VARIANTS if unsupported_reason(v, BasicBlock.norms) is None)
REFUSED_VARIANTS: dict[str, str] = {
    v: r for v in _ALL_VARIANTS if (r := unsupported_reason(v, BasicBlock.norms)) is not None
}


def small_name(variant: str) -> str:
    """Registry name of the small model of ``variant`` (``a`` -> ``small_resnet_ibn_a``)."""
    v = variant.removeprefix("ibn_")
    return "small_resnet" if v == "baseline" else f"small_resnet_ibn_{v}"


SMALL_MODELS: tuple[str, ...] = tuple(small_name(v) for v in VARIANTS)


def small_name_for(name: str) -> str:
    """The small model meant by ``name`` when the data are a built-in digits domain.

    Small names and their aliases map to themselves; a zoo alias (``ibn_a``), a bare variant
    (``baseline``, ``a``, ``ibn_a``), ``resnet`` or ``resnet50`` (the short name of the
    baseline) maps to the small model of that variant; any other registry name
    (``resnet50_ibn_a``, ``resnet18``) is returned as it is.
    """
    if name in SMALL_MODELS:
        return name
    bare = name.removeprefix("ibn_")
    # "resnet50" is the CLI's short name of the baseline, as ibn_a is of ResNet-50-IBN-a.
    if name in ("resnet", "resnet50", "baseline") or bare in _ALL_VARIANTS:
        # resolve_name refuses a variant the small net cannot be (a2), giving the reason
        return resolve_name(small_name("baseline" if name in ("resnet", "resnet50") else bare))
    canonical = resolve_name(name)  # raises UnknownNameError with suggestions
    info = model_info(canonical)
    if info.family == "small":
        return canonical  # with the weights tag asked for, if any (small_resnet.builtin_typeset)
    if name in aliases():
        return small_name(info.variant)
    return canonical


def scene_name_for(name: str) -> str:
    """The scene DeepLab meant by ``name`` on a built-in scene domain (``ibn_b``,
    ``small_resnet_ibn_b`` and ``deeplab_small_resnet_ibn_b`` all mean ``deeplab_small_resnet_ibn_b``)."""
    return "deeplab_" + small_name_for(name.removeprefix("deeplab_"))


def builtin_model_name(name: str, dataset: object) -> str | None:
    """The registry name ``name`` means on ``dataset``, or None when ``dataset`` is not built in
    (there ``name`` keeps its zoo meaning)."""
    if dataset in DIGIT_DOMAINS:
        return small_name_for(name)
    if dataset in SCENE_DOMAINS:
        return resolve_name(scene_name_for(name))
    return None

"""Small ResNets for the built-in digits benchmark, one per IBN variant of the paper.

Each is the zoo's :class:`~dgbench.models.resnet.ResNet` with a CIFAR-style stem (3x3 conv
without bias + norm + ReLU, no max-pool) for 32x32 inputs, four residual groups of one
:class:`~dgbench.models.resnet.BasicBlock` each (:data:`LAYERS`) with narrow widths
(:data:`WIDTHS`), and the variant's IN placement from :mod:`dgbench.models.ibn` (not
reimplemented here): ``baseline``, ``ibn_a``, ``ibn_b``, ``ibn_c``, ``ibn_d``, ``ibn_ad``
(no ``ibn_a2``: IBN-a x2 needs a bottleneck, see :func:`dgbench.models.ibn.unsupported_reason`;
``small_resnet_ibn_a2`` is refused with that reason). With one block per group, "the last block
of a group" (where b and d put their IN after the addition) is that block. Groups 1-4 run at 32, 16, 8 and 4 pixels.

Weights: ``pretrained=True`` loads the checkpoint trained on the real ``digits`` train split,
shipped in ``dgbench/assets/checkpoints/digits/`` and verified against the sha256 recorded in
that folder's ``manifest.json`` (a mismatch is a :class:`~dgbench.errors.CheckpointError`).
The checkpoints trained on ``typeset-digits`` ship beside them; :func:`load_builtin` loads either.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from torch import nn

from ..config import asset_path
from ..data import digits as D
from ..errors import CheckpointError, UnknownNameError
from .ibn import VARIANTS as _ALL_VARIANTS
from .ibn import unsupported_reason
from .registry import PretrainedCfg, aliases, model_info, refuse_model, register_model, resolve_name
from .resnet import BasicBlock, ResNet

LAYERS: tuple[int, int, int, int] = (1, 1, 1, 1)
WIDTHS: tuple[int, int, int, int] = (8, 16, 32, 64)
CHECKPOINT_DIR = ("checkpoints", "digits")  # under dgbench/assets
MANIFEST = "manifest.json"
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


def checkpoint_file(model: str, domain: str) -> str:
    """The shipped checkpoint's path relative to ``dgbench/assets``."""
    return "/".join((*CHECKPOINT_DIR, f"{model}-{domain}.pth"))


def manifest_path() -> Path:
    return asset_path(*CHECKPOINT_DIR, MANIFEST)


@functools.lru_cache(maxsize=1)
def _manifest_cached(mtime_ns: int) -> dict[str, dict[str, Any]]:
    entries = json.loads(manifest_path().read_text())["checkpoints"]
    return {e["file"]: e for e in entries}


def manifest() -> dict[str, dict[str, Any]]:
    """Shipped checkpoints by file name (``{}`` if the manifest is absent)."""
    path = manifest_path()
    if not path.is_file():
        return {}
    return _manifest_cached(path.stat().st_mtime_ns)


def _pretrained_cfg(model: str) -> PretrainedCfg:
    rel = checkpoint_file(model, "digits")
    entry = manifest().get(Path(rel).name)
    return PretrainedCfg(
        file=rel if entry else None,
        sha256_prefix=entry["sha256"] if entry else None,  # the full digest: the strictest prefix
        input_size=(3, D.INPUT_SIZE, D.INPUT_SIZE),
        mean=D.MEAN,
        std=D.STD,
        interpolation="nearest",  # 8x8 -> 32x32 without new grey levels (see dgbench.data.digits)
        crop_pct=1.0,
        num_classes=D.NUM_CLASSES,
        source="dgbench built-in: trained on the digits train split (dgbench train --reproduce-builtin)"
        if entry else "no shipped checkpoint (run dgbench train --reproduce-builtin)",
        license="MIT (dgbench); data: UCI optdigits via scikit-learn (CC BY 4.0)",
    )


def _register(variant: str) -> None:
    name = small_name(variant)
    v = variant.removeprefix("ibn_")

    def build(num_classes: int = D.NUM_CLASSES, **kwargs: Any) -> ResNet:
        kwargs.setdefault("stem", "cifar")
        kwargs.setdefault("widths", WIDTHS)
        return ResNet(BasicBlock, LAYERS, num_classes=num_classes, variant=v, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"Small ResNet ({'-'.join(map(str, LAYERS))} BasicBlocks, widths {WIDTHS}, CIFAR stem) "
        f"{'baseline' if v == 'baseline' else 'IBN-' + v} for the built-in 32x32 digits.\n\n"
        "IN placement: dgbench.models.ibn; keyword arguments as dgbench.models.resnet.ResNet."
    )
    register_model(
        family="small",
        backbone="small_resnet",
        variant="baseline" if v == "baseline" else f"ibn_{v}",
        pretrained_cfg=_pretrained_cfg(name),
        aliases=(f"small_{'baseline' if v == 'baseline' else 'ibn_' + v}",),
        name=name,
    )(build)


for _v in VARIANTS:
    _register(_v)
for _v, _why in REFUSED_VARIANTS.items():
    refuse_model(small_name(_v), _why, aliases=(f"small_ibn_{_v}",))


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
    if info.family == "small" or name in aliases():
        return small_name(info.variant)
    return canonical


def _verify(path: Path, model: str, domain: str) -> str:
    """Check ``path`` against the manifest; return its sha256 or raise :class:`CheckpointError`."""
    from .weights import sha256_file

    entry = manifest().get(path.name)
    if entry is None:
        raise CheckpointError(
            f"no shipped checkpoint for {model} on {domain} ({path.name} is not in {manifest_path()}); "
            "run `dgbench train --reproduce-builtin` to build them"
        )
    if not path.is_file():
        raise CheckpointError(f"shipped checkpoint {path} is missing; reinstall dgbench or run `dgbench train --reproduce-builtin`")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"shipped checkpoint {path} has sha256 {digest[:16]}..., but {manifest_path().name} records "
            f"{entry['sha256'][:16]}...: the file is corrupt or was replaced; reinstall dgbench or "
            "rebuild it with `dgbench train --reproduce-builtin`"
        )
    return digest


def load_builtin(model: str, domain: str = "digits", *, path: str | Path | None = None) -> nn.Module:
    """The small ``model`` (name or alias) trained on ``domain``, verified against the manifest.

    ``path`` loads that file instead of the shipped one but still requires its name and hash to be
    in the manifest (used to check a reproduced or copied checkpoint). The returned model is in
    eval mode and carries ``weights_sha256`` and ``train_domain``.
    """
    from .registry import create_model
    from .weights import load_state_dict_strict, read_state_dict

    if domain not in D.DOMAINS:
        raise UnknownNameError("digits domain", domain, D.DOMAINS)
    name = small_name_for(model)
    if name not in SMALL_MODELS:
        raise UnknownNameError("small model", model, SMALL_MODELS)
    file = Path(path) if path is not None else asset_path(checkpoint_file(name, domain))
    if path is not None and file.name != Path(checkpoint_file(name, domain)).name:
        raise CheckpointError(f"{file} is not named like the shipped {name} on {domain} checkpoint")
    digest = _verify(file, name, domain)
    net = create_model(name)
    load_state_dict_strict(net, read_state_dict(file), str(file))
    net.weights_sha256 = digest  # type: ignore[assignment]
    net.train_domain = domain  # type: ignore[assignment]
    return net.eval()

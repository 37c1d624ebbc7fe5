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
The checkpoints trained on ``typeset-digits`` ship beside them, as the weights tag
``builtin_typeset`` (``create_model("small_resnet_ibn_a.builtin_typeset", pretrained=True)``);
:func:`.checkpoints.load_builtin` loads either by domain (:mod:`.checkpoints` names every shipped file).
"""
from __future__ import annotations

from typing import Any

from ..models.registry import PretrainedCfg, refuse_model, register_model
from ..models.resnet import BasicBlock, ResNet
from . import digits as D
from .checkpoints import MANIFEST as MANIFEST_NAME
from .checkpoints import TAG_OF_DOMAIN, checkpoint_file, manifest
from .domains import DIGIT_DOMAINS
from .names import REFUSED_VARIANTS, VARIANTS, small_name

LAYERS: tuple[int, int, int, int] = (1, 1, 1, 1)
WIDTHS: tuple[int, int, int, int] = (8, 16, 32, 64)


def _weights_cfg(model: str, domain: str) -> PretrainedCfg | None:
    """The shipped ``model`` trained on ``domain`` as a weights record (None: not shipped)."""
    rel = checkpoint_file(model, domain)
    entry = manifest().get(rel.rsplit("/", 1)[-1])
    if entry is None:
        return None
    return PretrainedCfg(
        file=rel,
        sha256_prefix=entry["sha256"],  # the full digest: the strictest prefix
        sha256=entry["sha256"],
        tag=TAG_OF_DOMAIN[domain],
        source=f"dgbench built-in: trained on the {domain} train split (dgbench train --reproduce-builtin)",
        # The manifest's in-domain test accuracy, written when the file was trained, as error.
        published=(("top1_err", round(100 - entry["test_acc"], 4)),) if "test_acc" in entry else (),
        published_source=f"{MANIFEST_NAME} of the shipped checkpoints ({domain} test split)",
        **_DIGITS_INPUTS,
    )


_DIGITS_INPUTS: dict[str, Any] = dict(
    input_size=(3, D.INPUT_SIZE, D.INPUT_SIZE),
    mean=D.MEAN,
    std=D.STD,
    interpolation="nearest",  # 8x8 -> 32x32 without new grey levels (see dgbench.builtin.digits)
    crop_pct=1.0,
    num_classes=D.NUM_CLASSES,
    license="MIT (dgbench); data: UCI optdigits via scikit-learn (CC BY 4.0)",
)


def _weights(model: str) -> tuple[PretrainedCfg, ...]:
    """Every shipped checkpoint of ``model``, the digits one first; without any, one config saying so."""
    shipped = tuple(c for d in DIGIT_DOMAINS if (c := _weights_cfg(model, d)) is not None)
    return shipped or (PretrainedCfg(source="no shipped checkpoint (run dgbench train --reproduce-builtin)",
                                     **_DIGITS_INPUTS),)


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
        weights=_weights(name),
        aliases=(f"small_{'baseline' if v == 'baseline' else 'ibn_' + v}",),
        name=name,
    )(build)


for _v in VARIANTS:
    _register(_v)
for _v, _why in REFUSED_VARIANTS.items():
    refuse_model(small_name(_v), _why, aliases=(f"small_ibn_{_v}",))

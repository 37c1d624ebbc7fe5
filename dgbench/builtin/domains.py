"""The built-in benchmark's domains, declared once.

Two classification domains (handwritten and typeset digits) and, built from them, two segmentation
domains (scenes of those digits). Everything else (the datasets' registration, the checkpoints
shipped per domain, which model a short name means on them) reads these tuples.
"""
from __future__ import annotations

# Classification: the real scans first, as Cityscapes is first in the paper's Table 6.
DIGIT_DOMAINS: tuple[str, ...] = ("digits", "typeset-digits")
# Segmentation: each scene domain pastes the digits of one classification domain.
SCENE_DOMAINS: dict[str, str] = {"digit-scenes": "digits", "typeset-digit-scenes": "typeset-digits"}
# Natural-shift test sets of the digits (evaluation only; no checkpoint is trained on them):
# handwritten test digits cut from the digit scenes, off-centre, with neighbours' strokes.
NATURAL_DIGIT_DOMAINS: tuple[str, ...] = ("scene-digit-crops",)
# Cue-conflict sets (shape of one digit, texture of another): each made from, and scored with the
# models of, one classification domain. Not a domain of the other protocols.
CUE_CONFLICT_DOMAINS: dict[str, str] = {"digit-cue-conflict": "digits"}
# Multi-domain (leave-one-domain-out): the two digit domains and a third drawn from typeset glyphs
# of another generator seed in random ink and background colours (dgbench.builtin.digits_dg).
DG_SETS: dict[str, tuple[str, ...]] = {"digits-dg": (*DIGIT_DOMAINS, "stylized-digits")}
BUILTIN_DOMAINS: tuple[str, ...] = DIGIT_DOMAINS + tuple(SCENE_DOMAINS) + NATURAL_DIGIT_DOMAINS + tuple(DG_SETS)


def is_builtin(dataset: object) -> bool:
    """True for a dataset name of the built-in benchmark (which needs no data root)."""
    return dataset in BUILTIN_DOMAINS

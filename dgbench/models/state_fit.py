"""Why a state dict does not fit a model, said in one line.

torch's own message (``Error(s) in loading state_dict for DeepLab:`` followed by every key on
its own line) is useless once cut to one line, and unreadable uncut. :func:`fit_problems` names
the first few missing, unexpected and mis-shaped keys with their counts; :func:`describe_state_dict`
says what the checkpoint looks like (its top-level key groups and the architecture the keys
suggest), so a researcher who passed the wrong file sees which file it is.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

FIRST = 5  # keys named per kind of problem; the count says how many more there are


def listing(title: str, items: list[str], first: int = FIRST) -> str:
    """``"missing keys (12): a, b, c, d, e ... and 7 more"``."""
    more = f" ... and {len(items) - first} more" if len(items) > first else ""
    return f"{title} ({len(items)}): " + ", ".join(items[:first]) + more


def fit_problems(own: Mapping[str, Any], sd: Mapping[str, Any]) -> list[str]:
    """The missing / unexpected / mis-shaped keys of ``sd`` against a model's ``own`` state dict.

    A missing BN ``num_batches_tracked`` is not a problem: checkpoints saved before PyTorch 0.4.1
    (the authors' and torchvision's older files among them) lack it and BatchNorm fills it in.
    """
    missing = sorted(k for k in set(own) - set(sd) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {_shape(sd[k])} vs model {_shape(own[k])}"
        for k in set(own) & set(sd) if _shape(own[k]) != _shape(sd[k])
    )
    return [listing(title, keys) for title, keys in
            (("missing keys", spread(missing)), ("unexpected keys", spread(unexpected)), ("shape mismatches", shapes))
            if keys]


def spread(keys: list[str]) -> list[str]:
    """``keys`` with one per module first (its ``weight`` if it has one), so the few keys a message
    names show different modules (``bn1.BN``, ``bn1.IN``) rather than one module's bias, running_mean, ..."""
    modules: dict[str, str] = {}
    for k in sorted(keys):
        module, _, leaf = k.rpartition(".")
        if module not in modules or leaf == "weight":
            modules[module] = k
    first = list(modules.values())
    shown = set(first)
    return first + [k for k in sorted(keys) if k not in shown]


def describe_state_dict(sd: Mapping[str, Any]) -> str:
    """``"352 tensors under backbone (330), head (22); its keys suggest a DeepLab over a ResNet
    with IN in the blocks' first BN (IBN-a style), 19 classes"``."""
    groups = Counter(k.split(".", 1)[0] for k in sd)
    shown = ", ".join(f"{g} ({n})" for g, n in groups.most_common(6))
    more = f" and {len(groups) - 6} more groups" if len(groups) > 6 else ""
    text = f"{len(sd)} tensors under {shown}{more}" if sd else "no tensors"
    guess = guess_architecture(sd)
    return f"{text}; its keys suggest {guess}" if guess else text


def guess_architecture(sd: Mapping[str, Any]) -> str:
    """The family the keys look like (empty when none is recognised), with IN placement and classes."""
    keys = list(sd)
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("head.") for k in keys):
        inner = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        family = "a DeepLab over " + (_family(list(inner)) or "an unrecognised backbone")
        flavour = _in_placement(list(inner))
    else:
        family, flavour = _family(keys), _in_placement(keys)
    if not family:
        return ""
    if "CycleGAN" in family:
        flavour = ""  # its norms carry no weights: nothing to say about IN placement
    classes = _classes(sd)
    return family + (f" {flavour}" if flavour else "") + (f", {classes} classes" if classes else "")


def _family(keys: list[str]) -> str:
    if "model.1.weight" in keys:
        return "a CycleGAN ResnetGenerator"
    if any(".denseblock" in k for k in keys):
        return "a DenseNet"
    if any(k.startswith("layer0.") for k in keys):
        return "an SENet in the authors' layout (layer0 stem)"
    if any(k.startswith("layer1.") for k in keys):
        return "an SE-ResNet" if any(".se." in k for k in keys) else "a ResNet"
    return ""


def _in_placement(keys: list[str]) -> str:
    """Where instance norms sit: IBN-a puts IN inside block BNs, IBN-b after blocks, -d also in the stem."""
    where = []
    if any(k.startswith("bn1.IN.") for k in keys):
        where.append("in the stem")
    if any(re.match(r"layer\d\.\d+\.bn\d\.IN\.", k) or ".norm1.IN." in k for k in keys):
        where.append("in the blocks' BNs (IBN-a style)")
    if any(re.match(r"layer\d\.\d+\.IN\.", k) for k in keys):
        where.append("after blocks (IBN-b style)")
    return "with IN " + " and ".join(where) if where else "without IN (no IBN)"


def _classes(sd: Mapping[str, Any]) -> int | None:
    """Output classes: rows of the last classifier weight (``fc``, ``classifier`` or the DeepLab head)."""
    heads = [k for k in sd if re.fullmatch(r"(fc|classifier|head\.branches\.\d+|head\.classifier)\.weight", k)]
    if not heads:
        return None
    shape = _shape(sd[heads[-1]])
    return shape[0] if shape else None


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(getattr(v, "shape", ()))

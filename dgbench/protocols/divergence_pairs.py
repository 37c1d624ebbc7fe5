"""Domain pairs of the divergence protocol: what two sets of images a divergence compares.

Pairs are data, in the protocol's TOML table, grouped by the dataset they run on::

    [protocols.divergence.pairs.digits.handwritten-typeset]
    domains = ["digits", "typeset-digits"]      # appearance: two registered datasets

    [protocols.divergence.pairs.digits.stylize]
    shift = "cv-stylize"                        # appearance: the dataset vs a shift of the same images

    [protocols.divergence.pairs.digits.classes-0-4-vs-5-9]
    classes = "index"                           # content: the first half of the classes vs the rest

A pair has exactly one of ``domains``, ``shift`` or ``classes``, plus optional ``description``;
``classes = "seeded"`` splits a random permutation of the classes (``seed``, default 0) instead of
the index order; ``fallback`` (a shift) replaces ``shift`` when the shift's renderings are not
available (a Monet cache), and the record then names the shift actually used; ``optional = true``
skips the pair, with a note, when one of its datasets is not on this machine. A segmentation
dataset in ``domains`` (Cityscapes, GTA5) contributes its images only
(:class:`~dgbench.data.scene_images.SceneImages`); its root comes from ``--cityscapes``/``--gta5``
or the dataset's environment variable.

The protocol (:mod:`.divergence`) turns each pair into two domains: a dataset and a shift, or one
pass over the dataset with its images grouped by :func:`class_halves`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DgbenchError, SpecError

PAIR_FIELDS: dict[str, tuple[type, ...]] = {
    "domains": (list,), "shift": (str,), "classes": (str,), "seed": (int,), "fallback": (str,),
    "optional": (bool,), "description": (str,),
}
CLASS_SPLITS = ("index", "seeded")


@dataclass(frozen=True)
class DomainPair:
    name: str
    dataset: str  # the dataset the pair runs on (``--dataset``)
    type: str  # "appearance" or "content"
    domains: tuple[str, str] | None = None
    shift: str | None = None
    classes: str | None = None
    seed: int = 0
    fallback: str | None = None
    optional: bool = False  # skipped, with a note, when its data are not on this machine
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """What a record stores about the pair (and hashes into its key)."""
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.domains:
            d["domains"] = list(self.domains)
        if self.shift:
            d["shift"] = self.shift
        if self.classes:
            d["classes"] = self.classes
            if self.classes == "seeded":
                d["seed"] = self.seed
        return d


def parse_pairs(params: dict[str, Any], source: str, protocol: str) -> dict[str, list[DomainPair]]:
    """``params["pairs"]`` of a protocol spec -> {dataset: [pairs in file order]}; SpecError if bad."""
    out: dict[str, list[DomainPair]] = {}
    for dataset, table in params.get("pairs", {}).items():
        where = f"protocols.{protocol}.pairs.{dataset}"
        if not isinstance(table, dict) or not table:
            raise SpecError(f"{source}: {where}: must be a table of pairs ([{where}.NAME])")
        out[dataset] = [_parse_pair(dataset, name, t, source, f"{where}.{name}") for name, t in table.items()]
    return out


def _parse_pair(dataset: str, name: str, t: Any, source: str, where: str) -> DomainPair:
    def bad(msg: str) -> SpecError:
        return SpecError(f"{source}: {where}: {msg}")

    if not isinstance(t, dict):
        raise bad("must be a table")
    for key, value in t.items():
        if key not in PAIR_FIELDS:
            raise bad(f"unknown field {key!r} (known: {', '.join(PAIR_FIELDS)})")
        if (isinstance(value, bool) and bool not in PAIR_FIELDS[key]) or not isinstance(value, PAIR_FIELDS[key]):
            raise bad(f"{key} must be {PAIR_FIELDS[key][0].__name__}, got {type(value).__name__}")
    how = [k for k in ("domains", "shift", "classes") if k in t]
    if len(how) != 1:
        raise bad("needs exactly one of domains (two datasets), shift (a shift of the same images) "
                  f"or classes (index|seeded halves of the classes), got {how or 'none'}")
    domains = t.get("domains")
    if domains is not None and (len(domains) != 2 or not all(isinstance(d, str) for d in domains)
                                or domains[0] == domains[1]):
        raise bad(f"domains must name two different datasets, got {domains!r}")
    if "classes" in t and t["classes"] not in CLASS_SPLITS:
        raise bad(f"classes must be one of {', '.join(CLASS_SPLITS)}, got {t['classes']!r}")
    if "seed" in t and t.get("classes") != "seeded":
        raise bad("seed applies to classes = \"seeded\" only")
    if "fallback" in t and "shift" not in t:
        raise bad("fallback replaces a shift; this pair has none")
    return DomainPair(name=name, dataset=dataset, type="content" if "classes" in t else "appearance",
                      domains=tuple(domains) if domains else None, shift=t.get("shift"),
                      classes=t.get("classes"), seed=int(t.get("seed", 0)), fallback=t.get("fallback"),
                      optional=bool(t.get("optional", False)), description=t.get("description", ""))


def check_names(pairs: dict[str, list[DomainPair]], shifts: Any, source: str, protocol: str) -> None:
    """Shift names must be registered shifts (checked once every spec file is loaded)."""
    for dataset, ps in pairs.items():
        for p in ps:
            for what, s in (("shift", p.shift), ("fallback", p.fallback)):
                if s is not None and s not in shifts:
                    raise SpecError(f"{source}: protocols.{protocol}.pairs.{dataset}.{p.name}.{what}: "
                                    f"unknown shift {s!r}")


# ----------------------------------------------------------------------------- content pairs
def class_halves(labels: list[int], how: str, seed: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves of the classes present: by index order, or of a seeded permutation."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DgbenchError(f"a content pair needs at least two classes, the data have {len(classes)}")
    if how == "seeded":
        classes = [classes[i] for i in np.random.RandomState(seed).permutation(len(classes))]
    half = len(classes) // 2
    return sorted(classes[:half]), sorted(classes[half:])

"""Multi-domain image folders (``root/<domain>/<class>/*.jpg``): the standard domain-generalization sets.

The sets DomainBed trains on are registered once in :data:`DOMAIN_SETS` (their domain folders as
DomainBed's download script leaves them); ``folder-domains`` takes any tree of that layout, its
domains being its sub-folders. They are multi-domain sets, read by the leave-one-out protocol
(:func:`load_folder_domains`), not single test sets of the classification dataset registry. Nothing is downloaded: a missing root is one line naming where to
get the data and the flag / environment variable that points dgbench at it.

Splits (:func:`holdout_split`, as DomainBed's 80/20 "in"/"out" split of every domain): the
images of a domain are ordered by sha256 of ``"<seed>/<key>"`` (the key: the file's path under its
domain folder, or an index for generated data) and the first ``round(fraction * n)`` are held
out ("out", the in-domain validation images); the rest are "in". A smaller fraction's "out" lies
inside every larger one of the same seed (nested), and adding a file moves no other file from
one side to the other (stable). Each split's indices are hashed with :func:`indices_sha256`.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ENV_VARS, data_root
from ..errors import CorruptImageError, DgbenchError
from .base import indices_sha256

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
HOLDOUT_FRACTION = 0.2  # DomainBed's holdout_fraction: 20 % of every domain is its "out" split


@dataclass(frozen=True)
class DomainSetSpec:
    """A registered multi-domain set: its domains (folder names) and where to get it."""

    name: str
    domains: tuple[str, ...]
    num_classes: int
    source: str

    @property
    def env_var(self) -> str:
        return ENV_VARS[self.name]


# Domain folders as DomainBed's domainbed/scripts/download.py leaves them.
DOMAIN_SETS: dict[str, DomainSetSpec] = {s.name: s for s in (
    DomainSetSpec("pacs", ("art_painting", "cartoon", "photo", "sketch"), 7,
                  "PACS (Li et al. 2017), e.g. via DomainBed's download script (domainbed/scripts/download.py)"),
    DomainSetSpec("vlcs", ("Caltech101", "LabelMe", "SUN09", "VOC2007"), 5,
                  "VLCS (Fang et al. 2013), e.g. via DomainBed's download script"),
    DomainSetSpec("office-home", ("Art", "Clipart", "Product", "Real World"), 65,
                  "OfficeHome (Venkateswara et al. 2017, hemanthdv.org/officeHomeDataset), e.g. via DomainBed's download script"),
    DomainSetSpec("terra-incognita", ("location_100", "location_38", "location_43", "location_46"), 10,
                  "TerraIncognita (Beery et al. 2018), as DomainBed's download script rebuilds it"),
    DomainSetSpec("domainnet", ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"), 345,
                  "DomainNet (Peng et al. 2019, ai.bu.edu/M3SDA), e.g. via DomainBed's download script"),
)}
GENERIC = "folder-domains"


def hash_order(keys: Sequence[str], seed: int) -> list[int]:
    """The indices of ``keys`` ordered by sha256 of ``"<seed>/<key>"`` (the same on every machine)."""
    return sorted(range(len(keys)), key=lambda i: hashlib.sha256(f"{seed}/{keys[i]}".encode()).digest())


def holdout_split(keys: Sequence[str], seed: int, fraction: float = HOLDOUT_FRACTION) -> dict[str, list[int]]:
    """``{"in": sorted indices, "out": sorted indices}``: see the module docstring."""
    order = hash_order(keys, seed)
    k = int(round(fraction * len(keys)))
    return {"in": sorted(order[k:]), "out": sorted(order[:k])}


@dataclass
class DomainData:
    """One multi-domain set in memory terms: per domain its labels, stable keys and a loader.

    ``load(domain, indices)`` returns uint8 images ``[len(indices), 3, S, S]``: decoded files
    (folder sets) or slices of tensors (the built-in set). ``classes`` are shared by every domain.
    """

    name: str
    domains: tuple[str, ...]
    classes: tuple[str, ...]
    labels: dict[str, torch.Tensor]
    keys: dict[str, list[str]]
    images: dict[str, Any]  # domain -> uint8 tensor [N, 3, S, S] or a list of file paths
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)

    def load(self, domain: str, indices: Sequence[int]) -> torch.Tensor:
        imgs = self.images[domain]
        if isinstance(imgs, torch.Tensor):
            return imgs[torch.as_tensor(list(indices), dtype=torch.long)]
        return torch.stack([_decode(imgs[i], self.size) for i in indices])

    def check_domain(self, domain: str) -> str:
        if domain not in self.domains:
            raise DgbenchError(f"--held-out {domain}: not a domain of {self.name} (its domains: {', '.join(self.domains)})")
        return domain

    def splits(self, seed: int, fraction: float = HOLDOUT_FRACTION) -> dict[str, dict[str, list[int]]]:
        return {d: holdout_split(self.keys[d], seed, fraction) for d in self.domains}

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.name}|{self.size}|{','.join(self.classes)}".encode())
        for d in self.domains:
            h.update(f"|{d}|".encode())
            h.update("\n".join(self.keys[d]).encode())
            h.update(self.labels[d].numpy().astype("<i8").tobytes())
            if isinstance(self.images[d], torch.Tensor):
                h.update(self.images[d].numpy().tobytes())
        return h.hexdigest()


def split_record(splits: dict[str, dict[str, list[int]]], seed: int) -> dict[str, Any]:
    """What a record stores of a trial's splits: the rule, the seed, sizes and index hashes."""
    return {"rule": f"sha256(seed/key) order, first {HOLDOUT_FRACTION:g} out (nested)", "seed": seed,
            "domains": {d: {"in": len(s["in"]), "out": len(s["out"]), "in_sha256": indices_sha256(s["in"]),
                            "out_sha256": indices_sha256(s["out"])} for d, s in splits.items()}}


def _decode(path: str, size: int) -> torch.Tensor:
    # DomainBed's evaluation transform: the whole image resized to size x size (no crop).
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    try:
        with Image.open(path) as im:
            return pil_to_tensor(im.convert("RGB").resize((size, size), Image.BILINEAR))
    except Exception as exc:  # PIL raises many kinds (UnidentifiedImageError, OSError, SyntaxError)
        raise CorruptImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc}); "
                                "replace or remove the file") from None


def _scan_domain(root: Path, domain: str) -> dict[str, list[str]]:
    """``{class: sorted relative paths}`` of one domain folder."""
    out: dict[str, list[str]] = {}
    for cls_dir in sorted(p for p in (root / domain).iterdir() if p.is_dir()):
        files = sorted(str(f.relative_to(root / domain)) for f in cls_dir.rglob("*")
                       if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if files:
            out[cls_dir.name] = files
    return out


def missing_root(name: str) -> DgbenchError:
    if name == GENERIC:
        return DgbenchError("folder-domains: no data root; pass --data /path/to/root laid out as "
                            "root/<domain>/<class>/*.jpg")
    spec = DOMAIN_SETS[name]
    return DgbenchError(f"{name}: no data root; get {spec.source}, then pass --data /path/to/it or set "
                        f"${spec.env_var} (layout root/<domain>/<class>/*.jpg, domains {', '.join(spec.domains)})")


def load_folder_domains(name: str, root: str | os.PathLike | None, size: int = 224) -> DomainData:
    """Scan ``root`` (or the set's environment variable) into a :class:`DomainData`; bad trees are one line."""
    spec = DOMAIN_SETS.get(name)
    root = data_root(name, root) if spec else root  # flag > $DGBENCH_<NAME> (config's convention)
    if not root:
        raise missing_root(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DgbenchError(f"{name}: data root {root} is not a folder")
    domains = spec.domains if spec else tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    missing = [d for d in domains if not (root / d).is_dir()]
    if missing:
        raise DgbenchError(f"{name}: domain folder {root / missing[0]} is missing (expected {', '.join(domains)})")
    if len(domains) < 2:
        raise DgbenchError(f"{name}: {root} has {len(domains)} domain folder(s); leave-one-domain-out needs at least 2")
    scans = {d: _scan_domain(root, d) for d in domains}
    classes = tuple(scans[domains[0]])
    for d in domains[1:]:
        if tuple(scans[d]) != classes:
            extra = sorted(set(scans[d]) ^ set(classes))
            raise DgbenchError(f"{name}: the classes of {root / d} differ from those of {root / domains[0]} "
                               f"(not in both: {', '.join(extra[:5])})")
    if spec and len(classes) != spec.num_classes:
        raise DgbenchError(f"{name}: {root} has {len(classes)} class folders per domain, expected {spec.num_classes} "
                           f"(is --data the {name} root, laid out root/<domain>/<class>/*.jpg?)")
    labels, keys, images = {}, {}, {}
    for d in domains:
        pairs = [(rel, c) for c, cls in enumerate(classes) for rel in scans[d][cls]]
        keys[d] = [rel for rel, _ in pairs]
        labels[d] = torch.tensor([c for _, c in pairs], dtype=torch.long)
        images[d] = [str(root / d / rel) for rel, _ in pairs]
    return DomainData(name, domains, classes, labels, keys, images, size, (0.485, 0.456, 0.406),
                      (0.229, 0.224, 0.225), info={"root": str(root), "layout": "root/<domain>/<class>/*"})

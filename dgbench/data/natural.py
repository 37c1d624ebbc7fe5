"""ImageNet's natural distribution shifts, read in their official layouts (never downloaded).

* ``imagenet-v2-matched-frequency``, ``imagenet-v2-threshold-0.7``, ``imagenet-v2-top-images``
  (Recht et al. 2019): 1000 class folders named ``0`` .. ``999`` (the folder is the class index);
* ``imagenet-sketch`` (Wang et al. 2019): 1000 synset folders (``n01440764/``);
* ``imagenet-r`` (Hendrycks et al. 2021) and ``imagenet-a`` (Hendrycks et al. 2021): 200 synset
  folders each; the 200 synsets are shipped in ``dgbench/assets/imagenet_{r,a}_synsets.txt``;
* ``objectnet`` (Barbu et al. 2019): ``images/<folder>/*.png`` and the dataset's own
  ``mappings/`` (folder -> ObjectNet label -> ImageNet labels -> ILSVRC-2012 ids -> class
  index); only the 113 ObjectNet classes that overlap ImageNet are used, and the 1-pixel red
  border of every image is cut off before the resize.

A class-subset dataset (R, A, ObjectNet) carries ``class_map``: for each of its classes, the
ImageNet class indices it pools. Its labels are positions in that list, and a 1000-class model is
scored on the model's logits restricted (and, for ObjectNet, max-pooled) to those classes
before the arg-max (:mod:`dgbench.metrics.class_subsets`), as the datasets' papers score them.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ENV_VARS, asset_path, data_root
from ..errors import DatasetNotFoundError
from .base import ClassificationDataset, Preprocess, register_dataset
from .imagenet import IMAGE_EXTS, decode_crop, synset_index, synsets

OBJECTNET_OVERLAP = 113  # ObjectNet classes with an ImageNet counterpart
OBJECTNET_BORDER = 1  # pixels of red frame on every side of an ObjectNet image
OBJECTNET_MAPPINGS = ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json",
                      "pytorch_to_imagenet_2012_id.json", "imagenet_to_label_2012_v2")


@dataclass(frozen=True)
class NaturalSet:
    """One registered natural-shift dataset: its layout, where it comes from, how to point at it."""

    name: str
    env: str  # key of config.ENV_VARS
    layout: str  # "index-folders" | "synset-folders" | "objectnet"
    source: str  # where to get it
    subdir: str = ""  # the folder the official archive extracts to, looked for under the root
    subset: str = ""  # asset file listing the subset's synsets ("" = all 1000)


SETS: dict[str, NaturalSet] = {s.name: s for s in (
    NaturalSet("imagenet-v2-matched-frequency", "imagenet-v2", "index-folders",
               "https://huggingface.co/datasets/vaishaal/ImageNetV2", "imagenetv2-matched-frequency-format-val"),
    NaturalSet("imagenet-v2-threshold-0.7", "imagenet-v2", "index-folders",
               "https://huggingface.co/datasets/vaishaal/ImageNetV2", "imagenetv2-threshold0.7-format-val"),
    NaturalSet("imagenet-v2-top-images", "imagenet-v2", "index-folders",
               "https://huggingface.co/datasets/vaishaal/ImageNetV2", "imagenetv2-top-images-format-val"),
    NaturalSet("imagenet-sketch", "imagenet-sketch", "synset-folders",
               "https://github.com/HaohanWang/ImageNet-Sketch", "sketch"),
    NaturalSet("imagenet-r", "imagenet-r", "synset-folders", "https://github.com/hendrycks/imagenet-r",
               "imagenet-r", "imagenet_r_synsets.txt"),
    NaturalSet("imagenet-a", "imagenet-a", "synset-folders", "https://github.com/hendrycks/natural-adv-examples",
               "imagenet-a", "imagenet_a_synsets.txt"),
    NaturalSet("objectnet", "objectnet", "objectnet", "https://objectnet.dev", "objectnet-1.0"),
)}


def expected(s: NaturalSet) -> str:
    """What the root of ``s`` must hold, in words."""
    if s.layout == "index-folders":
        return "1000 class folders named 0 .. 999 of images"
    if s.layout == "objectnet":
        return f"images/<class folder>/ and the dataset's mappings/ ({', '.join(OBJECTNET_MAPPINGS)})"
    wnids = subset_synsets(s.subset) if s.subset else synsets()
    listed = f", the synsets of dgbench/assets/{s.subset}" if s.subset else ""
    return f"{len(wnids)} synset folders ({wnids[0]}/ ...) of images{listed}"


def where(s: NaturalSet) -> str:
    """The one line that says where to get ``s`` and how to point dgbench at it."""
    return (f"{s.name} is not downloaded by dgbench: get it from {s.source} and set {ENV_VARS[s.env]}="
            f"/path/to/it (or pass the folder as its root); expected {expected(s)}")


@functools.lru_cache(maxsize=None)
def subset_synsets(asset: str) -> tuple[str, ...]:
    """A shipped subset list (one WNID a line, sorted, each an ILSVRC-2012 synset)."""
    path = asset_path(asset)
    wnids = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    index = synset_index()
    if list(wnids) != sorted(set(wnids)) or any(w not in index for w in wnids):
        raise RuntimeError(f"{path}: damaged subset list (need sorted unique ILSVRC-2012 WNIDs)")
    return wnids


def resolve_root(s: NaturalSet, root: str | os.PathLike | None) -> Path:
    """The dataset's folder: the flag, else its env var; the official archive's folder inside it if there."""
    found = data_root(s.env, root)
    if found is None:
        raise DatasetNotFoundError(f"no {s.name} folder given: {where(s)}")
    if s.subdir and (found / s.subdir).is_dir():
        return found / s.subdir
    if not found.is_dir():
        raise DatasetNotFoundError(f"{found}: does not exist or is not a folder; {where(s)}")
    sharing = [o.name for o in SETS.values() if o.env == s.env and o is not s]
    if s.subdir and sharing and found.name != s.subdir:
        # Sets sharing one variable differ only by their sub-folder: taking the root itself would
        # measure one set's images under every name (ImageNet-V2's three variants).
        raise DatasetNotFoundError(f"{found}: no {s.subdir}/ folder in it for {s.name} ({ENV_VARS[s.env]} also "
                                   f"holds {', '.join(sharing)}); point it at the folder holding {s.subdir}/")
    return found


def _images(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTS))


def scan_class_folders(root: Path, folders: dict[str, int], s: NaturalSet,
                       ignore_others: bool = False) -> list[tuple[Path, int]]:
    """``(image, label)`` of every image under the expected class folders ``{folder: label}``.

    Every expected folder must be there (a missing one is named); another folder is refused
    unless ``ignore_others`` (ObjectNet's classes without an ImageNet counterpart)."""
    present = {e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")}
    missing = sorted(set(folders) - present, key=lambda f: folders[f])
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetNotFoundError(f"{root / missing[0]}: class folder missing{more}; {where(s)}")
    other = sorted(present - set(folders))
    if other and not ignore_others:
        more = f" (and {len(other) - 1} more)" if len(other) > 1 else ""
        raise DatasetNotFoundError(f"{root / other[0]}: not a class folder of {s.name}{more}; expected {expected(s)}")
    samples = [(p, label) for f, label in sorted(folders.items(), key=lambda kv: kv[1]) for p in _images(root / f)]
    if not samples:
        raise DatasetNotFoundError(f"{root}: the class folders hold no images; expected {expected(s)}")
    return samples


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetNotFoundError(f"{path}: cannot read ObjectNet's mapping ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DatasetNotFoundError(f"{path}: expected a JSON object")
    return data


def _pytorch_indices(path: Path, pytorch_ids: dict[str, Any]) -> dict[int, int]:
    """ILSVRC2012_ID -> class index, from the file's ``{"index": id}`` entries (integers as text or numbers)."""
    out: dict[int, int] = {}
    for k, v in pytorch_ids.items():
        try:
            out[int(v)] = int(k)
        except (TypeError, ValueError):
            raise DatasetNotFoundError(f"{path}: entry {k!r}: {v!r} is not a class index -> ILSVRC2012_ID pair "
                                       "of integers") from None
    return out


def objectnet_classes(mappings: Path) -> dict[str, tuple[int, ...]]:
    """ObjectNet folder -> the ImageNet class indices it maps to, for its overlapping classes, read
    from the dataset's own ``mappings/`` (its files and their formats as ObjectNet ships them)."""
    for name in OBJECTNET_MAPPINGS:
        if not (mappings / name).is_file():
            raise DatasetNotFoundError(f"{mappings / name}: missing; {where(SETS['objectnet'])}")
    folder_label = _read_json(mappings / "folder_to_objectnet_label.json")
    to_imagenet = _read_json(mappings / "objectnet_to_imagenet_1k.json")
    pytorch_ids = _read_json(mappings / "pytorch_to_imagenet_2012_id.json")
    labels = (mappings / "imagenet_to_label_2012_v2").read_text().splitlines()  # line i: ILSVRC2012_ID i + 1
    id_to_index = _pytorch_indices(mappings / "pytorch_to_imagenet_2012_id.json", pytorch_ids)
    label_folder = {v: k for k, v in folder_label.items()}
    out: dict[str, tuple[int, ...]] = {}
    for on_label, names in to_imagenet.items():
        if on_label not in label_folder:
            raise DatasetNotFoundError(f"{mappings / 'folder_to_objectnet_label.json'}: no folder for {on_label!r}")
        idx = []
        for name in str(names).split("; "):
            if name not in labels:
                raise DatasetNotFoundError(f"{mappings / 'imagenet_to_label_2012_v2'}: no line {name!r} "
                                           f"(named for {on_label!r} in objectnet_to_imagenet_1k.json)")
            ilsvrc_id = labels.index(name) + 1
            if ilsvrc_id not in id_to_index:
                raise DatasetNotFoundError(f"{mappings / 'pytorch_to_imagenet_2012_id.json'}: no class index for "
                                           f"ILSVRC2012_ID {ilsvrc_id} ({name!r}, line {ilsvrc_id} of "
                                           "imagenet_to_label_2012_v2)")
            idx.append(id_to_index[ilsvrc_id])
        out[label_folder[on_label]] = tuple(sorted(set(idx)))
    if len(out) != OBJECTNET_OVERLAP:
        raise DatasetNotFoundError(f"{mappings / 'objectnet_to_imagenet_1k.json'}: maps {len(out)} ObjectNet classes "
                                   f"to ImageNet; ObjectNet 1.0 has {OBJECTNET_OVERLAP}")
    return out


def layout_of(s: NaturalSet, root: Path) -> tuple[list[tuple[Path, int]], list[tuple[int, ...]] | None]:
    """``(samples, class_map)`` of ``s`` at ``root`` (class_map None: the 1000 ImageNet classes)."""
    if s.layout == "index-folders":
        return scan_class_folders(root, {str(i): i for i in range(1000)}, s), None
    if s.layout == "synset-folders":
        wnids = subset_synsets(s.subset) if s.subset else synsets()
        samples = scan_class_folders(root, {w: i for i, w in enumerate(wnids)}, s)
        return samples, ([(synset_index()[w],) for w in wnids] if s.subset else None)
    if not (root / "images").is_dir():
        raise DatasetNotFoundError(f"{root / 'images'}: missing; {where(s)}")
    classes = objectnet_classes(root / "mappings")
    folders = sorted(classes)
    samples = scan_class_folders(root / "images", {f: i for i, f in enumerate(folders)}, s, ignore_others=True)
    return samples, [classes[f] for f in folders]


class NaturalShiftSet(ClassificationDataset):
    """A natural-shift dataset as uint8 crops; ``class_map`` for the class-subset ones."""

    def __init__(self, spec: NaturalSet, root: Path, preprocess: Preprocess | None = None):
        self.spec, self.name, self.root = spec, spec.name, root
        self.preprocess = preprocess or Preprocess()
        self.samples, self.class_map = layout_of(spec, root)
        self.num_classes = len(self.class_map) if self.class_map is not None else 1000
        self.border = OBJECTNET_BORDER if spec.layout == "objectnet" else 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return decode_crop(path, self.preprocess, self.border), label

    def sample_id(self, index: int) -> str:
        return self.samples[index][0].relative_to(self.root).with_suffix("").as_posix()

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.name}|border={self.border}\n".encode())
        for path, label in self.samples:
            h.update(f"{path.relative_to(self.root).as_posix()}\t{path.stat().st_size}\t{label}\n".encode())
        if self.class_map is not None:
            h.update(json.dumps(self.class_map).encode())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """sha256 of (relative path, size, label) of every image, and the class map."""
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "layout": self.spec.layout,
                "images_in_tree": len(self.samples), "classes": self.num_classes,
                "scoring": "logits restricted to the subset's classes" if self.class_map else "all 1000 classes",
                "border_cropped_px": self.border}


def _builder(s: NaturalSet):
    def build(root: str | os.PathLike | None = None, *, split: str = "val", preprocess: Preprocess | None = None,
              **options: Any) -> NaturalShiftSet:
        if split not in ("val", "test"):
            raise DatasetNotFoundError(f"{s.name} is an evaluation set: no {split!r} split")
        if options:
            raise DatasetNotFoundError(f"unknown option(s) for {s.name}: {', '.join(sorted(options))}")
        return NaturalShiftSet(s, resolve_root(s, root), preprocess)

    build.__name__ = f"build_{s.name.replace('-', '_').replace('.', '_')}"
    build.__doc__ = f"The {s.name} dataset at ``root`` (or ``${ENV_VARS[s.env]}``)."
    return build


for _set in SETS.values():
    register_dataset(_set.name)(_builder(_set))

"""ImageNet (ILSVRC-2012) validation images in the layouts people have.

Layouts, detected from the file list alone (fast even on 50,000 images):

* ``folders``: one folder per synset (``n01440764/ILSVRC2012_val_00000293.JPEG``), as ImageFolder;
* ``loc-csv``: flat ``ILSVRC2012_val_*.JPEG`` with Kaggle's ``LOC_val_solution.csv``
  (``ImageId,PredictionString``; the first token of the prediction string is the synset);
* ``devkit``: flat images with the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one
  ILSVRC2012_ID per line, line i for image i) and the synset mapping: the devkit's ``meta.mat``,
  or a text file ``ILSVRC2012_mapping.txt`` with ``ID WNID`` lines (or one WNID per line, line i
  = ID i). Both are looked for in the root, its parents (3 levels) and their
  ``ILSVRC2012_devkit_t12/data`` folders.

The class index is the synset's position in the canonical sorted list of the 1,000 ILSVRC-2012
synsets shipped in ``dgbench/assets/imagenet_synsets.txt`` (n01440764 = 0 ... n15075141 = 999), so
a tree that holds only some classes still gets the model's indices.

Preprocessing equals the authors' evaluation (torchvision ``Resize(256)`` + ``CenterCrop(224)`` on
PIL images: PIL decode, antialiased bilinear resize of the shorter side); see :func:`decode_crop`.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..config import asset_path, data_root
from ..errors import CorruptImageError, DatasetNotFoundError
from .base import ClassificationDataset, Preprocess, class_balanced_indices, register_dataset
from .device_decode import DECODE_INFO, DeviceDecoder, Encoded, read_encoded

IMAGE_EXTS = (".jpeg", ".jpg", ".png")
DECODE_PATHS = ("pil", "gpu")  # pil: exact, in the workers; gpu: see dgbench.data.device_decode
SYNSET_RE = re.compile(r"^n\d{8}$")
VAL_RE = re.compile(r"^ILSVRC2012_val_(\d{8})$")
CSV_NAME = "LOC_val_solution.csv"
GT_NAME = "ILSVRC2012_validation_ground_truth.txt"
MAPPING_NAMES = ("meta.mat", "ILSVRC2012_mapping.txt")
EXPECTED = (
    "expected ImageNet validation images in one of these layouts: (1) 1000 synset folders "
    "(n01440764/, ..., n15075141/) of JPEGs; (2) flat ILSVRC2012_val_*.JPEG files with "
    f"{CSV_NAME} beside them or in a parent folder; (3) flat images with the devkit's {GT_NAME} "
    "and meta.mat (or ILSVRC2012_mapping.txt)"
)


@functools.lru_cache(maxsize=1)
def synsets() -> tuple[str, ...]:
    """The 1,000 ILSVRC-2012 synsets, sorted: index = class index of every ImageNet model."""
    path = asset_path("imagenet_synsets.txt")
    wnids = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or list(wnids) != sorted(wnids):
        raise RuntimeError(f"{path}: damaged synset list (need 1000 unique sorted WNIDs)")
    return wnids


@functools.lru_cache(maxsize=1)
def synset_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(synsets())}


def decode_crop(path: str | os.PathLike, preprocess: Preprocess, border: int = 0) -> torch.Tensor:
    """Decode an image file to a uint8 ``[3, crop, crop]`` tensor exactly as the authors' eval did.

    PIL decode -> RGB -> resize the shorter side to ``resize_size`` with PIL's antialiased
    bilinear filter -> center crop: the same calls torchvision's ``Resize``/``CenterCrop`` make on a
    PIL image, so the result is bit-identical (tested against torchvision). A corrupt or truncated
    file raises :class:`CorruptImageError` naming it. ``border`` pixels are cut from every side
    first (ObjectNet's images carry a 1-pixel red frame that is not part of the photo).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if border:
                im = im.crop((border, border, im.width - border, im.height - border))
    except Exception as exc:  # PIL raises many kinds (UnidentifiedImageError, OSError, SyntaxError)
        raise CorruptImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
    interp = InterpolationMode(preprocess.interpolation)
    im = TF.resize(im, preprocess.resize_size, interpolation=interp)
    im = TF.center_crop(im, preprocess.crop_size)
    return TF.pil_to_tensor(im)


@dataclass
class Layout:
    """What a scan of an ImageNet root found: layout name, samples (path, class index), label files."""

    kind: str
    root: Path
    samples: list[tuple[Path, int]]
    label_files: list[Path] = field(default_factory=list)


def _image_files(folder: Path) -> list[os.DirEntry]:
    return [e for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTS)]


def _search_up(root: Path, names: tuple[str, ...], levels: int = 3) -> Path | None:
    """First file named one of ``names`` in root, its parents, or their devkit data folders."""
    here = root
    for _ in range(levels + 1):
        for base in (here, here / "ILSVRC2012_devkit_t12" / "data", here / "data"):
            for n in names:
                if (base / n).is_file():
                    return base / n
        if here.parent == here:
            break
        here = here.parent
    return None


def _read_loc_csv(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise DatasetNotFoundError(f"{path}: expected a header 'ImageId,PredictionString', got {header!r}")
        for lineno, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) < 2 or not row[1].split():
                raise DatasetNotFoundError(f"{path}:{lineno}: malformed row {row!r}")
            out[row[0].strip()] = row[1].split()[0]
    return out


def _read_mapping(path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID from the devkit's meta.mat or a text mapping."""
    if path.suffix == ".mat":
        from scipy.io import loadmat

        meta = loadmat(str(path), squeeze_me=True)["synsets"]
        return {int(row[0]): str(row[1]) for row in meta if int(row[4]) == 0}  # num_children == 0: a leaf class
    mapping: dict[int, str] = {}
    for i, line in enumerate(path.read_text().split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 1:
            mapping[i] = parts[0]
        else:
            mapping[int(parts[0])] = parts[1]
    return mapping


def scan(root: str | os.PathLike) -> Layout:
    """Detect the layout of an ImageNet val root and list its samples (no image is opened)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"ImageNet root {root} does not exist or is not a folder; {EXPECTED}")
    index = synset_index()
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    flat = _image_files(root)
    if subdirs and not flat:
        bad = [d for d in subdirs if d not in index]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DatasetNotFoundError(
                f"{root / bad[0]}: folder {bad[0]!r} is not an ILSVRC-2012 synset{more}; {EXPECTED}"
            )
        samples = [(Path(e.path), index[d]) for d in subdirs for e in _image_files(root / d)]
        if not samples:
            raise DatasetNotFoundError(f"{root}: synset folders hold no images; {EXPECTED}")
        return Layout("folders", root, samples)
    if not flat:
        raise DatasetNotFoundError(f"{root}: no images and no synset folders; {EXPECTED}")
    csv_path = _search_up(root, (CSV_NAME,))
    if csv_path is not None:
        labels = _read_loc_csv(csv_path)
        samples = []
        for e in flat:
            stem = Path(e.name).stem
            if stem not in labels:
                raise DatasetNotFoundError(f"{e.path}: not listed in {csv_path}")
            wnid = labels[stem]
            if wnid not in index:
                raise DatasetNotFoundError(f"{csv_path}: {stem}: {wnid!r} is not an ILSVRC-2012 synset")
            samples.append((Path(e.path), index[wnid]))
        return Layout("loc-csv", root, samples, [csv_path])
    gt_path = _search_up(root, (GT_NAME,))
    if gt_path is not None:
        map_path = _search_up(gt_path.parent, MAPPING_NAMES, levels=0) or _search_up(root, MAPPING_NAMES)
        if map_path is None:
            raise DatasetNotFoundError(
                f"found {gt_path} but no synset mapping (meta.mat or ILSVRC2012_mapping.txt) beside it or near {root}"
            )
        mapping = _read_mapping(map_path)
        ids = [int(line) for line in gt_path.read_text().split()]
        samples = []
        for e in flat:
            m = VAL_RE.match(Path(e.name).stem)
            if not m:
                raise DatasetNotFoundError(f"{e.path}: not named ILSVRC2012_val_NNNNNNNN, cannot match {gt_path}")
            num = int(m.group(1))
            if not 1 <= num <= len(ids):
                raise DatasetNotFoundError(f"{e.path}: image {num} has no line in {gt_path} ({len(ids)} lines)")
            wnid = mapping.get(ids[num - 1])
            if wnid not in index:
                raise DatasetNotFoundError(f"{map_path}: ILSVRC2012_ID {ids[num - 1]} maps to {wnid!r}, not a synset")
            samples.append((Path(e.path), index[wnid]))
        return Layout("devkit", root, samples, [gt_path, map_path])
    raise DatasetNotFoundError(
        f"{root}: {len(flat)} flat images but no labels ({CSV_NAME} or {GT_NAME} not found in it or its parents); {EXPECTED}"
    )


def class_balanced(samples: list[tuple[Path, int]], n: int) -> list[tuple[Path, int]]:
    """A fixed, class-balanced subset of ``n`` samples: round-robin over classes in index order,
    each class's images in file-name order (so 10,000 of ImageNet val = 10 per class)."""
    ordered = sorted(samples, key=lambda s: s[0].name)
    return [ordered[i] for i in class_balanced_indices([y for _, y in ordered], n)]


class ImageNetVal(ClassificationDataset):
    """ILSVRC-2012 validation images as uint8 crops with canonical class indices.

    Samples are ordered by file name (so every layout gives the same order), then optionally
    reduced to a class-balanced ``subset`` and/or the first ``limit`` images.
    """

    name = "imagenet"
    num_classes = 1000

    def __init__(
        self,
        root: str | os.PathLike,
        preprocess: Preprocess | None = None,
        *,
        limit: int | None = None,
        subset: int | None = None,
        decode: str = "pil",
    ):
        if decode not in DECODE_PATHS:
            raise DatasetNotFoundError(f"decode {decode!r}: use one of {', '.join(DECODE_PATHS)}")
        self.decode = decode
        if decode == "gpu":  # recorded in every result's preprocessing (so in its key)
            self.decode_info = DECODE_INFO
        self.layout = scan(root)
        self.root = self.layout.root
        self.preprocess = preprocess or Preprocess()
        all_samples = sorted(self.layout.samples, key=lambda s: s[0].name)
        self._all = all_samples
        chosen = class_balanced(all_samples, subset) if subset else all_samples
        self.samples = chosen[:limit] if limit else chosen
        self.limit, self.subset = limit, subset
        stems = [p.stem for p, _ in all_samples]
        self._ids_by_stem = len(set(stems)) == len(stems)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return decode_crop(path, self.preprocess), label

    def encoded(self, index: int) -> tuple[Encoded, int]:
        """The file as read for ``--decode gpu`` (decoded later, on the device), and its label."""
        path, label = self.samples[index]
        return read_encoded(path), label

    def device_decoder(self) -> DeviceDecoder:
        return DeviceDecoder(self.preprocess)

    def sample_id(self, index: int) -> str:
        """Stable per-image id (the file stem, unique in ImageNet val, the same in every layout)."""
        path = self.samples[index][0]
        return path.stem if self._ids_by_stem else path.relative_to(self.root).with_suffix("").as_posix()

    def sample_path(self, index: int) -> Path:
        return self.samples[index][0]

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, label in self._all:
            h.update(f"{path.name}\t{path.stat().st_size}\t{label}\n".encode())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """sha256 of (file name, size, class index) of every image of the tree (before subset/limit)."""
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "layout": self.layout.kind,
            "label_files": [str(p) for p in self.layout.label_files],
            "images_in_tree": len(self._all),
            "classes_in_tree": len({c for _, c in self._all}),
            "images_selected": len(self.samples),
        }


@register_dataset("imagenet")
def build_imagenet(
    root: str | os.PathLike | None = None,
    *,
    split: str = "val",
    preprocess: Preprocess | None = None,
    limit: int | None = None,
    subset: int | None = None,
    decode: str = "pil",
    **_: Any,
) -> ImageNetVal:
    """The ImageNet validation set at ``root`` (or ``$DGBENCH_IMAGENET``)."""
    if split != "val":
        raise DatasetNotFoundError(f"dgbench evaluates ImageNet's 'val' split only, not {split!r}")
    resolved = data_root("imagenet", root)
    if resolved is None:
        raise DatasetNotFoundError(
            "no ImageNet validation folder given: pass --data /path/to/imagenet/val or set "
            f"DGBENCH_IMAGENET; {EXPECTED}"
        )
    return ImageNetVal(resolved, preprocess, limit=limit, subset=subset, decode=decode)

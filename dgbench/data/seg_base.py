"""Shared pieces of the segmentation datasets (Cityscapes, GTA5): label table, pairs, checks.

Labels are stored on disk as Cityscapes *labelIds* (0..33). The 19 evaluated classes and their
trainIds, names and colours come from ``cityscapesscripts.helpers.labels`` (the official table,
not retyped here); every other labelId maps to trainId 255 (ignored).

A dataset is a list of (image, label) file pairs. Before training or evaluation the pairs are
checked from file headers (cheap: no pixel decoding) for what real downloads get wrong: an image
without a label or the reverse, an unreadable file, a label map whose size differs from its image.
What happens then is an explicit policy (:class:`QuirkPolicy`), reported with file names, never
silent. Label *values* are checked when a label is decoded: a value outside the label table is an
error (or, by choice, ignored), with the file name and the offending values.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import CorruptImageError, DgbenchError

IGNORE_INDEX = 255
NUM_CLASSES = 19


class SegmentationDataError(DgbenchError):
    """A segmentation tree is inconsistent (counts, sizes, label values); the message names files."""


class QuirkWarning(UserWarning):
    """A data quirk was handled by a non-default policy (skip / resize); the message names files."""


# ---------------------------------------------------------------------------------------------
# The label table, derived once from cityscapesscripts.


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from cityscapesscripts.helpers.labels import labels

    label_to_train = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(256, dtype=bool)
    train_to_label = np.zeros(256, dtype=np.uint8)  # trainId 255 and unused ids -> 0 "unlabeled"
    palette = np.zeros((256, 3), dtype=np.uint8)  # trainId -> colour (255 stays black)
    names: dict[int, str] = {}
    for lab in labels:
        if lab.id < 0:  # "license plate": has no id in the label images
            continue
        known[lab.id] = True
        if 0 <= lab.trainId < IGNORE_INDEX and not lab.ignoreInEval:
            label_to_train[lab.id] = lab.trainId
            # The inverse uses the first label with that trainId, as cityscapesscripts does.
            if lab.trainId not in names:
                train_to_label[lab.trainId] = lab.id
                palette[lab.trainId] = lab.color
                names[lab.trainId] = lab.name
    class_names = [names[i] for i in range(len(names))]
    return label_to_train, train_to_label, palette, known, class_names


LABEL_TO_TRAIN, TRAIN_TO_LABEL, TRAIN_PALETTE, KNOWN_LABEL_IDS, CLASS_NAMES = _build_tables()
assert len(CLASS_NAMES) == NUM_CLASSES


def label_ids_to_train_ids(label: np.ndarray) -> np.ndarray:
    """Map a labelId map (uint8) to trainIds through the 256-entry lookup table."""
    return LABEL_TO_TRAIN[label]


def train_ids_to_label_ids(train: np.ndarray) -> np.ndarray:
    """Map a trainId map back to labelIds (the form the official evaluation reads)."""
    return TRAIN_TO_LABEL[train]


def colorize(train: np.ndarray) -> np.ndarray:
    """``[H, W]`` trainIds -> ``[H, W, 3]`` uint8 RGB in the Cityscapes palette."""
    return TRAIN_PALETTE[train]


# ---------------------------------------------------------------------------------------------
# Pairs, quirks and policies.


@dataclass(frozen=True)
class Pair:
    image: Path
    label: Path
    name: str  # stem used for prediction file names (Cityscapes: city_seq_frame; GTA5: 00001)


@dataclass(frozen=True)
class QuirkPolicy:
    """What to do with a pair whose files disagree.

    size_mismatch: ``"error"`` (default: list the files and stop), ``"resize-label"`` (nearest-
        neighbour resize of the label to its image, the only resize that keeps label values valid)
        or ``"skip"`` (leave the pair out).
    unreadable: ``"error"`` (default) or ``"skip"``.
    unknown_labels: label values outside the Cityscapes table: ``"error"`` (default) or
        ``"ignore"`` (map them to 255).
    """

    size_mismatch: str = "error"
    unreadable: str = "error"
    unknown_labels: str = "error"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("size_mismatch", ("error", "resize-label", "skip")),
            ("unreadable", ("error", "skip")),
            ("unknown_labels", ("error", "ignore")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} policy must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass
class Quirk:
    kind: str  # "size_mismatch" | "unreadable"
    files: list[str]
    detail: str
    action: str  # "error" | "skip" | "resize-label"


@dataclass
class LayoutReport:
    """What :func:`check_layout` found: a ``dgbench doctor`` row per dataset."""

    dataset: str
    root: str | None
    ok: bool
    split: str = ""
    num_pairs: int = 0
    problems: list[str] = field(default_factory=list)  # errors: the tree cannot be used as is
    notes: list[str] = field(default_factory=list)  # handled quirks and hints
    quirks: list[Quirk] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        head = f"{self.dataset}: {'ok' if self.ok else 'PROBLEM'} ({self.root}, split {self.split}, {self.num_pairs} pairs)"
        return "\n".join([head] + [f"  - {p}" for p in self.problems] + [f"  * {n}" for n in self.notes])


def layout_report(
    dataset: str,
    resolve: Callable[[], Path],
    find: Callable[[Path, str], list["Pair"]],
    splits: Sequence[str],
    quirk_note: Callable[[str, Quirk], str] | None = None,
) -> LayoutReport:
    """``dgbench doctor``'s layout check of one dataset; never raises.

    ``find(root, split)`` lists a split's pairs; file headers are scanned for quirks (no pixel
    decoding). A quirk is a problem unless ``quirk_note`` words it as a note (quirks with a policy).
    """
    from ..errors import DatasetNotFoundError

    try:
        root = resolve()
    except DatasetNotFoundError as exc:
        return LayoutReport(dataset, None, False, problems=[str(exc)])
    report = LayoutReport(dataset, str(root), True, split=",".join(splits))
    for split in splits:
        try:
            pairs = find(root, split)
            _, quirks, _ = scan_pairs(pairs, QuirkPolicy(size_mismatch="skip", unreadable="skip"), dataset, warn=False)
        except Exception as exc:  # doctor reports every problem instead of stopping at the first
            report.ok = False
            report.problems.append(f"{split}: {exc}")
            continue
        report.num_pairs += len(pairs)
        report.notes.append(f"{split}: {len(pairs)} pairs")
        for q in quirks:
            report.quirks.append(q)
            if quirk_note is None:
                report.ok = False
                report.problems.append(f"{split}: {q.kind} in {len(q.files)} file(s): {', '.join(q.files[:5])}")
            else:
                report.notes.append(quirk_note(split, q))
    return report


def _list_names(paths: Sequence[Any], limit: int = 10) -> str:
    names = [str(p) for p in paths]
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) read from the file header only, or None if the file cannot be opened."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError):
        return None


def scan_pairs(
    pairs: Sequence[Pair], policy: QuirkPolicy, dataset: str, *, warn: bool = True
) -> tuple[list[Pair], list[Quirk], set[str]]:
    """Check every pair's headers and apply ``policy``.

    Returns the pairs to use, the quirks found (with the action taken) and the names of pairs whose
    label must be resized to their image. Raises :class:`SegmentationDataError` /
    :class:`CorruptImageError` listing every offending file when the policy is ``"error"``.
    """
    keep: list[Pair] = []
    unreadable: list[Path] = []
    mismatched: list[tuple[Pair, tuple[int, int], tuple[int, int]]] = []
    for p in pairs:
        isz, lsz = header_size(p.image), header_size(p.label)
        bad = [f for f, s in ((p.image, isz), (p.label, lsz)) if s is None]
        if bad:
            unreadable.extend(bad)
            continue
        if isz != lsz:
            mismatched.append((p, isz, lsz))  # type: ignore[arg-type]
        keep.append(p)

    quirks: list[Quirk] = []
    if unreadable:
        if policy.unreadable == "error":
            raise CorruptImageError(
                f"{dataset}: {len(unreadable)} file(s) cannot be read: {_list_names(unreadable)}. "
                "Re-download them, or pass the unreadable policy 'skip' (--gta5-unreadable skip) to leave those pairs out."
            )
        quirks.append(Quirk("unreadable", [str(f) for f in unreadable], "cannot be opened", "skip"))
        bad_set = set(unreadable)
        keep = [p for p in keep if p.image not in bad_set and p.label not in bad_set]

    resize: set[str] = set()
    if mismatched:
        desc = [f"{p.label.name} {l[0]}x{l[1]} vs {p.image.name} {i[0]}x{i[1]}" for p, i, l in mismatched]
        if policy.size_mismatch == "error":
            raise SegmentationDataError(
                f"{dataset}: {len(mismatched)} label map(s) differ in size from their image: "
                f"{_list_names(desc)}. Choose a policy: --gta5-mismatch resize-label (nearest resize of "
                "the label to the image) or --gta5-mismatch skip (leave those pairs out)."
            )
        quirks.append(Quirk("size_mismatch", [str(p.label) for p, _, _ in mismatched], "; ".join(desc), policy.size_mismatch))
        if policy.size_mismatch == "skip":
            drop = {p.name for p, _, _ in mismatched}
            keep = [p for p in keep if p.name not in drop]
        else:
            resize = {p.name for p, _, _ in mismatched}
    for q in quirks if warn else ():
        warnings.warn(
            f"{dataset}: {q.kind} in {len(q.files)} file(s), policy {q.action}: {_list_names(q.files)}",
            QuirkWarning,
            stacklevel=3,
        )
    return keep, quirks, resize


def match_counts(images: dict[str, Path], labels: dict[str, Path], dataset: str, where: str) -> None:
    """Error listing the images without a label and the labels without an image."""
    no_label = sorted(set(images) - set(labels))
    no_image = sorted(set(labels) - set(images))
    if no_label or no_image:
        parts = [f"{dataset}: {len(images)} images but {len(labels)} labels under {where}."]
        if no_label:
            parts.append(f"Images without a label: {_list_names([images[k] for k in no_label])}.")
        if no_image:
            parts.append(f"Labels without an image: {_list_names([labels[k] for k in no_image])}.")
        raise SegmentationDataError(" ".join(parts))


# ---------------------------------------------------------------------------------------------
# Decoding.


def read_image(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB; a decode failure names the file."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc


def read_label(path: Path) -> np.ndarray:
    """``[H, W]`` uint8 labelIds. Palette PNGs (GTA5) give their indices, which are the labelIds."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise SegmentationDataError(
                    f"label {path} has mode {im.mode}: expected a single-channel labelId map "
                    "(colour label images are not labelIds)"
                )
            arr = np.array(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(f"cannot decode label {path}: {exc}") from exc
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise SegmentationDataError(f"label {path} has values outside 0..255 (min {arr.min()}, max {arr.max()})")
        arr = arr.astype(np.uint8)
    return arr


def to_train_ids(label: np.ndarray, path: Path, unknown: str = "error") -> np.ndarray:
    """labelIds -> trainIds, checking the values against the label table."""
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    outside = [int(v) for v in present if not KNOWN_LABEL_IDS[v]]
    if outside and unknown == "error":
        raise SegmentationDataError(
            f"label {path} has value(s) {outside} outside the Cityscapes label table (labelIds "
            f"{int(np.flatnonzero(KNOWN_LABEL_IDS).min())}..{int(np.flatnonzero(KNOWN_LABEL_IDS).max())}); "
            "is it a trainId or colour map? Pass the unknown-label policy 'ignore' to map them to 255."
        )
    return LABEL_TO_TRAIN[label]


def resize_nearest(label: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(label, size_wh, interpolation=cv2.INTER_NEAREST)


Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def default_transform(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[3, H, W]`` image and int64 ``[H, W]`` trainIds, unchanged geometry."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    return img, torch.from_numpy(label.astype(np.int64))


class SegmentationDataset(Dataset):
    """``ds[i] -> (uint8 image [3, H, W], int64 trainIds [H, W], name)`` over checked pairs.

    ``base_size`` (width, height), when given, resizes every image (bilinear) and label (nearest)
    first: GTA5 is trained at 1024x563 in the paper.
    """

    name = ""
    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        root: Path,
        split: str,
        policy: QuirkPolicy | None = None,
        transform: Transform | None = None,
        base_size: tuple[int, int] | None = None,
        check: bool = True,
    ):
        self.root, self.split = root, split
        self.policy = policy or QuirkPolicy()
        if check:
            pairs, self.quirks, self._resize = scan_pairs(pairs, self.policy, self.name)
        else:
            self.quirks, self._resize = [], set()
        if not pairs:
            raise SegmentationDataError(f"{self.name}: no usable image/label pairs in {root} (split {split})")
        self.pairs = list(pairs)
        self.transform = transform or default_transform
        self.base_size = base_size

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``(RGB uint8 [H, W, 3], trainIds uint8 [H, W])`` with the quirk policy applied."""
        import cv2

        p = self.pairs[index]
        image, label = read_image(p.image), read_label(p.label)
        if image.shape[:2] != label.shape:
            if p.name not in self._resize:
                raise SegmentationDataError(
                    f"{self.name}: image {p.image} is {image.shape[1]}x{image.shape[0]} but label {p.label} "
                    f"is {label.shape[1]}x{label.shape[0]}"
                )
            label = resize_nearest(label, (image.shape[1], image.shape[0]))
        train = to_train_ids(label, p.label, self.policy.unknown_labels)
        if self.base_size is not None and (image.shape[1], image.shape[0]) != tuple(self.base_size):
            image = cv2.resize(image, tuple(self.base_size), interpolation=cv2.INTER_LINEAR)
            train = resize_nearest(train, tuple(self.base_size))
        return image, train

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image, train = self.load(index)
        img, lbl = self.transform(image, train)
        return img, lbl, self.pairs[index].name

    def sample_id(self, index: int) -> str:
        """The image's stable name (``city_seq_frame``, ``00001``): per-image outcomes are ordered by it."""
        return self.pairs[index].name

    def fingerprint(self) -> str:
        """Content fingerprint: relative file names and sizes (no decoding)."""
        import hashlib
        import json

        items = []
        for p in self.pairs:
            items.append([str(p.image.relative_to(self.root)), p.image.stat().st_size,
                          str(p.label.relative_to(self.root)), p.label.stat().st_size])
        payload = json.dumps([self.name, self.split, self.base_size, items], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": str(self.root),
            "split": self.split,
            "num_pairs": len(self.pairs),
            "base_size": list(self.base_size) if self.base_size else None,
            "policy": asdict(self.policy),
            "quirks": [asdict(q) for q in self.quirks],
        }

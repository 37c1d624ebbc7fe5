"""GTA5 ("Playing for Data", Richter et al. 2016) in its official layout.

    <root>/images/00001.png ... 24966.png     RGB frames, 1914x1052
    <root>/labels/00001.png ...               Cityscapes labelIds (palette PNGs)
    <root>/split.mat                          trainIds / valIds / testIds (official split)

The root comes from ``--gta5-root`` or ``$DGBENCH_GTA5``. The split is read from ``split.mat``
(MATLAB file with three column vectors of 1-based frame numbers: frame 1 is ``00001.png``; read
with ``scipy.io.loadmat``) or from a text list (one frame number or file name per line), by
default ``<root>/split.mat`` else ``<root>/{split}.txt``. ``split="all"`` uses every pair.

Known quirks of the real download and dgbench's policy (:class:`.seg_base.QuirkPolicy`):

* label maps whose size differs from their image (a few dozen frames): by default an error that
  lists every such pair; ``size_mismatch="resize-label"`` resizes the label (nearest neighbour) to
  its image, ``"skip"`` leaves the pair out. Either way the files are reported (warning + the
  dataset's ``quirks``, stored in the result record's ``dataset_info``).
* unreadable files: error by default, ``unreadable="skip"`` leaves the pair out, reported likewise.
* split frames with no file: an error listing them (a partial download), never silently dropped.

Training follows the paper: images resized to 1024x563 (``base_size``) and a seeded quarter of
the train split (``fraction=0.25``, ``subset_seed``) so the data scale matches Cityscapes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import ENV_VARS, data_root
from ..errors import DatasetNotFoundError
from .seg_base import (
    LayoutReport,
    Pair,
    Quirk,
    QuirkPolicy,
    SegmentationDataError,
    SegmentationDataset,
    Transform,
    _list_names,
    layout_report,
    match_counts,
)

SPLITS = ("train", "val", "test", "all")
TRAIN_SIZE = (1024, 563)  # (width, height) the paper trains GTA5 at


def resolve_root(root: str | os.PathLike | None) -> Path:
    r = data_root("gta5", root)
    if r is None:
        raise DatasetNotFoundError(
            f"GTA5 root not set: pass --gta5-root DIR or set {ENV_VARS['gta5']}=DIR, where DIR holds "
            "images/*.png, labels/*.png (Cityscapes labelIds) and split.mat"
        )
    return r


def _stem_key(token: str) -> str:
    """Normalise a split entry (``17``, ``00017``, ``images/00017.png``) to a file stem."""
    stem = Path(token.strip()).stem
    return f"{int(stem):05d}" if stem.isdigit() else stem


def read_split_file(path: Path, split: str) -> list[str]:
    """Frame stems of ``split`` from ``split.mat`` (``{split}Ids``) or a text list."""
    if path.suffix.lower() == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError as exc:  # scipy comes with scikit-learn, a dgbench dependency
            raise SegmentationDataError(f"reading {path} needs scipy (pip install scipy), or pass a text list") from exc
        try:
            mat = loadmat(str(path))
        except Exception as exc:  # scipy raises several types for a damaged file
            raise SegmentationDataError(f"cannot read GTA5 split file {path}: {exc}") from exc
        key = f"{split}Ids"
        if key not in mat:
            have = sorted(k for k in mat if not k.startswith("__"))
            raise SegmentationDataError(f"{path} has no {key!r} (has {have}); expected trainIds/valIds/testIds")
        ids = np.asarray(mat[key]).ravel()
        return [f"{int(i):05d}" for i in ids]
    lines = path.read_text().splitlines()
    return [_stem_key(t) for t in lines if t.strip() and not t.lstrip().startswith("#")]


def find_pairs(root: Path, split: str = "train", split_file: str | os.PathLike | None = None) -> list[Pair]:
    img_dir, lbl_dir = root / "images", root / "labels"
    missing = [d for d in (img_dir, lbl_dir) if not d.is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"GTA5 tree not found: missing {', '.join(str(m) for m in missing)}. Expected {root}/images/*.png, "
            f"{root}/labels/*.png and {root}/split.mat (root from --gta5-root or {ENV_VARS['gta5']})"
        )
    images = {_stem_key(p.stem): p for p in img_dir.glob("*.png")}
    labels = {_stem_key(p.stem): p for p in lbl_dir.glob("*.png")}
    if not images:
        raise DatasetNotFoundError(f"GTA5: no {img_dir}/*.png files")
    match_counts(images, labels, "GTA5", f"{img_dir} and {lbl_dir}")
    if split == "all" and split_file is None:
        keys = sorted(images)
    else:
        sf = Path(split_file) if split_file else None
        if sf is None:
            for cand in (root / "split.mat", root / f"{split}.txt"):
                if cand.is_file():
                    sf = cand
                    break
        if sf is None or not sf.is_file():
            raise DatasetNotFoundError(
                f"GTA5 split {split!r}: no split file ({sf or root / 'split.mat'} or {root / (split + '.txt')}); "
                "put the official split.mat in the root, pass --gta5-split-file, or use split 'all'"
            )
        keys = read_split_file(sf, split)
        absent = [k for k in keys if k not in images]
        if absent:
            raise SegmentationDataError(
                f"GTA5: {len(absent)} frame(s) of split {split!r} in {sf} have no file in {img_dir}: "
                f"{_list_names([k + '.png' for k in absent])}"
            )
    return [Pair(images[k], labels[k], k) for k in keys]


def subset(pairs: list[Pair], fraction: float, seed: int) -> list[Pair]:
    """A seeded random ``fraction`` of ``pairs`` (kept in file order)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return pairs
    n = max(1, int(round(len(pairs) * fraction)))
    idx = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:n])
    return [pairs[i] for i in idx]


class GTA5Segmentation(SegmentationDataset):
    """GTA5 ``split`` as ``(uint8 image, int64 trainIds, name)`` samples."""

    name = "gta5"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "val",
        *,
        split_file: str | os.PathLike | None = None,
        fraction: float = 1.0,
        subset_seed: int = 0,
        transform: Transform | None = None,
        policy: QuirkPolicy | None = None,
        base_size: tuple[int, int] | None = None,
    ):
        if split not in SPLITS:
            raise SegmentationDataError(f"GTA5 split must be one of {SPLITS}, got {split!r}")
        r = resolve_root(root)
        # The subset is drawn before the quirk scan so it does not depend on the policy.
        pairs = subset(find_pairs(r, split, split_file), fraction, subset_seed)
        self.fraction, self.subset_seed = fraction, subset_seed
        super().__init__(pairs, root=r, split=split, policy=policy, transform=transform, base_size=base_size)

    def describe(self) -> dict:
        d = super().describe()
        d.update(fraction=self.fraction, subset_seed=self.subset_seed)
        return d


def check_layout(
    root: str | os.PathLike | None = None,
    splits: tuple[str, ...] = ("train", "val"),
    split_file: str | os.PathLike | None = None,
) -> LayoutReport:
    """``dgbench doctor``'s GTA5 check: layout, counts, split file, header sizes; never raises.

    Size-mismatched and unreadable pairs are listed as notes (they have a policy; the default
    policy stops, so they are also what the user must decide about).
    """
    def note(split: str, q: Quirk) -> str:
        return (f"{split}: {q.kind} in {len(q.files)} file(s) ({_list_names(q.files, 5)}); "
                "choose --gta5-mismatch resize-label|skip / --gta5-unreadable skip")

    return layout_report("gta5", lambda: resolve_root(root), lambda r, split: find_pairs(r, split, split_file), splits, note)

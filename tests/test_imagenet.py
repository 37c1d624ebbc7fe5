"""ImageNet val: canonical synsets, the three layouts, errors that name what is wrong, subsets,
and preprocessing equal to torchvision's Resize(256) + CenterCrop(224) on PIL images."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from appearance_fixtures import folder_tree, write_jpeg
from dgbench.data.base import Preprocess, build_dataset
from dgbench.data.imagenet import ImageNetVal, class_balanced, decode_crop, scan, synsets
from dgbench.errors import CorruptImageError, DatasetNotFoundError

LABELS = [3, 0, 999, 3, 17, 0]  # image i (1-based) has class LABELS[i-1]


# sha256 of the 1000 WordNet ids, one per line ("\n".join(ids) + "\n"), computed from an
# independent copy of the list: timm 1.0.31's timm/data/_info/imagenet_synsets.txt (the wheel from
# PyPI; not a dependency). To recompute: pip download timm --no-deps, unzip that file, then
# hashlib.sha256(("\n".join(ids) + "\n").encode()).hexdigest().
SYNSETS_SHA256 = "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"
# Class indices every ImageNet user knows by name (tench, goldfish, golden retriever, tabby cat,
# Egyptian cat, analog clock, toilet tissue): the order of the middle too, not only the ends.
KNOWN_CLASSES = {0: "n01440764", 1: "n01443537", 207: "n02099601", 281: "n02123045",
                 285: "n02124075", 409: "n02708093", 999: "n15075141"}


def test_synset_list_is_the_canonical_sorted_1000() -> None:
    import hashlib

    s = synsets()
    assert len(s) == 1000 == len(set(s)) and list(s) == sorted(s)
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in s)
    assert {i: s[i] for i in KNOWN_CLASSES} == KNOWN_CLASSES
    assert hashlib.sha256(("\n".join(s) + "\n").encode()).hexdigest() == SYNSETS_SHA256


def _flat_copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.rglob("*.JPEG"):
        shutil.copy(p, dst / p.name)
    return dst


def make_layouts(tmp_path: Path) -> dict[str, Path]:
    folders = folder_tree(tmp_path / "folders" / "val", LABELS)
    # Kaggle layout: flat images, LOC_val_solution.csv two levels up
    kaggle = _flat_copy(folders, tmp_path / "kaggle" / "ILSVRC" / "Data" / "val")
    rows = ["ImageId,PredictionString"] + [
        f"ILSVRC2012_val_{i:08d},{synsets()[c]} 1 2 30 40 {synsets()[c]} 5 6 7 8" for i, c in enumerate(LABELS, 1)
    ]
    (tmp_path / "kaggle" / "ILSVRC" / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    # devkit layout: ground truth IDs + a mapping whose IDs are NOT the sorted order (as the devkit's)
    devkit = _flat_copy(folders, tmp_path / "devkit" / "val")
    data = tmp_path / "devkit" / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    order = list(reversed(synsets()))  # ILSVRC2012_ID k -> order[k-1]
    (data / "ILSVRC2012_mapping.txt").write_text("".join(f"{k} {w}\n" for k, w in enumerate(order, 1)))
    ids = [order.index(synsets()[c]) + 1 for c in LABELS]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{k}\n" for k in ids))
    return {"folders": folders, "loc-csv": kaggle, "devkit": devkit}


def test_three_layouts_give_the_same_labels_order_and_fingerprint(tmp_path: Path) -> None:
    layouts = make_layouts(tmp_path)
    seen = {}
    for kind, root in layouts.items():
        ds = ImageNetVal(root, Preprocess(resize_size=40, crop_size=32))
        assert ds.layout.kind == kind
        seen[kind] = ([p.name for p, _ in ds.samples], [c for _, c in ds.samples], ds.fingerprint())
        assert [c for _, c in ds.samples] == LABELS
        assert [ds.sample_id(i) for i in range(2)] == ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"]
    assert seen["folders"] == seen["loc-csv"] == seen["devkit"]
    x, y = ImageNetVal(layouts["devkit"], Preprocess(resize_size=40, crop_size=32))[2]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == 999


def test_devkit_meta_mat_mapping(tmp_path: Path) -> None:
    from scipy.io import savemat

    folders = folder_tree(tmp_path / "f" / "val", LABELS[:3])
    flat = _flat_copy(folders, tmp_path / "flat")
    order = list(reversed(synsets()))
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O"),
          ("wordnet_height", "O"), ("num_train_images", "O")]
    rows = [(k, w, "w", "g", 0, 0, 1300) for k, w in enumerate(order, 1)] + [(1001, "n00001740", "entity", "g", 5, 18, 0)]
    savemat(str(flat / "meta.mat"), {"synsets": np.array(rows, dtype=dt)})
    (flat / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{order.index(synsets()[c]) + 1}\n" for c in LABELS[:3]))
    lay = scan(flat)
    assert lay.kind == "devkit" and [c for _, c in sorted(lay.samples)] == LABELS[:3]


def test_a_folder_that_is_not_a_synset_is_named(tmp_path: Path) -> None:
    root = folder_tree(tmp_path / "val", [0, 1])
    (root / "cats").mkdir()
    write_jpeg(root / "cats" / "x.JPEG", 1)
    with pytest.raises(DatasetNotFoundError, match="'cats' is not an ILSVRC-2012 synset"):
        scan(root)
    (root / "n99999999").mkdir()
    with pytest.raises(DatasetNotFoundError, match="cats"):
        scan(root)


def test_missing_or_unlabelled_trees_say_what_was_expected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist.*expected ImageNet"):
        scan(tmp_path / "nope")
    flat = tmp_path / "flat"
    write_jpeg(flat / "ILSVRC2012_val_00000001.JPEG", 1)
    with pytest.raises(DatasetNotFoundError, match="no labels"):
        scan(flat)
    monkeypatch.delenv("DGBENCH_IMAGENET", raising=False)
    with pytest.raises(DatasetNotFoundError, match="DGBENCH_IMAGENET"):
        build_dataset("imagenet")
    monkeypatch.setenv("DGBENCH_IMAGENET", str(tmp_path / "folders"))
    folder_tree(tmp_path / "folders", [5])
    assert len(build_dataset("imagenet")) == 1


def test_subset_is_class_balanced_and_fixed_and_limit_takes_the_first(tmp_path: Path) -> None:
    labels = [0] * 5 + [1] * 2 + [2] * 5
    root = folder_tree(tmp_path / "val", labels)
    ds = ImageNetVal(root, subset=6)
    counts = {c: sum(1 for _, y in ds.samples if y == c) for c in (0, 1, 2)}
    assert counts == {0: 2, 1: 2, 2: 2}
    assert [p.name for p, _ in ds.samples] == [p.name for p, _ in ImageNetVal(root, subset=6).samples]
    ds9 = ImageNetVal(root, subset=9)  # class 1 runs out: the others fill in, round-robin
    assert {c: sum(1 for _, y in ds9.samples if y == c) for c in (0, 1, 2)} == {0: 4, 1: 2, 2: 3}
    lim = ImageNetVal(root, limit=3)
    assert [p.name for p, _ in lim.samples] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    assert lim.fingerprint() == ds.fingerprint()  # the tree's, whatever the selection
    assert class_balanced(ds._all, 0) == []


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.JPEG"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(CorruptImageError, match="bad.JPEG"):
        decode_crop(bad, Preprocess())
    trunc = tmp_path / "trunc.JPEG"
    write_jpeg(trunc, 3, size=(300, 200))
    trunc.write_bytes(trunc.read_bytes()[:400])
    with pytest.raises(CorruptImageError, match="trunc.JPEG"):
        decode_crop(trunc, Preprocess())


def test_preprocessing_equals_torchvision_on_real_photos(tmp_path: Path) -> None:
    from sklearn.datasets import load_sample_images
    from torchvision import transforms as T

    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    for i, arr in enumerate(load_sample_images().images):  # china.jpg, flower.jpg (427 x 640)
        for ext in ("JPEG", "png"):
            path = tmp_path / f"photo{i}.{ext}"
            Image.fromarray(arr).save(path, quality=90) if ext == "JPEG" else Image.fromarray(arr).save(path)
            want = ref(Image.open(path).convert("RGB"))
            got = decode_crop(path, Preprocess())
            assert got.dtype == torch.uint8 and got.shape == (3, 224, 224)
            assert torch.equal(got, want), f"{path.name}: differs from torchvision's PIL pipeline"
        # portrait orientation too (the shorter side is the width)
        path = tmp_path / f"portrait{i}.JPEG"
        Image.fromarray(np.ascontiguousarray(arr.transpose(1, 0, 2))).save(path, quality=90)
        assert torch.equal(decode_crop(path, Preprocess()), ref(Image.open(path).convert("RGB")))


def test_preprocessing_equals_pil_resize_and_a_hand_computed_crop(tmp_path: Path) -> None:
    """An independent path: PIL's own Image.resize with the documented filter (bilinear, which PIL
    antialiases when shrinking) to the size the authors' Resize(256) gives, then the center-crop
    box worked out by hand, so a wrong size, rounding, filter or offset in decode_crop fails."""
    from sklearn.datasets import load_sample_images

    arr = load_sample_images().images[0]  # china.jpg: 640 wide, 427 high
    assert arr.shape[:2] == (427, 640)
    # Landscape 640x427: shorter side 427 -> 256, longer int(640 * 256 / 427) = int(383.7) = 383.
    # Crop 224 from 383x256: left = round((383 - 224) / 2) = round(79.5) = 80, top = 16.
    # Portrait 427x640: the same numbers with the axes swapped.
    cases = {"landscape": (arr, (383, 256), (80, 16, 304, 240)),
             "portrait": (np.ascontiguousarray(arr.transpose(1, 0, 2)), (256, 383), (16, 80, 240, 304))}
    for name, (pixels, size, box) in cases.items():
        path = tmp_path / f"{name}.png"  # lossless, so the decoded pixels are the array's
        Image.fromarray(pixels).save(path)
        want = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR).crop(box))
        got = decode_crop(path, Preprocess())
        assert got.shape == (3, 224, 224)
        assert np.array_equal(got.permute(1, 2, 0).numpy(), want), name
        # the comparison can fail: a crop one pixel off gives other pixels
        off = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR).crop(
            (box[0] + 1, box[1], box[2] + 1, box[3])))
        assert not np.array_equal(got.permute(1, 2, 0).numpy(), off)

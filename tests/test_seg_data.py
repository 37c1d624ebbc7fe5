"""Cityscapes and GTA5 layouts, splits, quirk policies and bad-input errors on tiny fixture trees."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgbench.data.cityscapes import CityscapesSegmentation
from dgbench.data.cityscapes import check_layout as cs_check
from dgbench.data.gta5 import GTA5Segmentation
from dgbench.data.gta5 import check_layout as gta_check
from dgbench.data.seg_base import LABEL_TO_TRAIN, QuirkPolicy, QuirkWarning, SegmentationDataError
from dgbench.errors import CorruptImageError, DatasetNotFoundError
from seg_fixtures import make_cityscapes, make_gta5


def test_cityscapes_layout_and_label_mapping(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val")
    ds = CityscapesSegmentation(root, "val")
    assert len(ds) == 4
    img, lbl, name = ds[0]
    assert img.shape == (3, 32, 64) and str(img.dtype) == "torch.uint8"
    assert lbl.shape == (32, 64)
    assert name == "aachen_000000_000019"
    raw = np.array(Image.open(root / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png"))
    assert np.array_equal(lbl.numpy(), LABEL_TO_TRAIN[raw])
    assert set(np.unique(lbl.numpy())) <= set(range(19)) | {255}
    assert len(ds.fingerprint()) == 64


def test_label_table_comes_from_cityscapesscripts() -> None:
    from cityscapesscripts.helpers.labels import labels

    for lab in labels:
        if lab.id >= 0:
            want = lab.trainId if not lab.ignoreInEval else 255
            assert LABEL_TO_TRAIN[lab.id] == want, lab.name
    assert (LABEL_TO_TRAIN[34:] == 255).all()


def test_missing_tree_names_env_var_and_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DGBENCH_CITYSCAPES", raising=False)
    monkeypatch.delenv("DGBENCH_GTA5", raising=False)
    with pytest.raises(DatasetNotFoundError, match="DGBENCH_CITYSCAPES"):
        CityscapesSegmentation(None, "val")
    with pytest.raises(DatasetNotFoundError, match=r"leftImg8bit/val/<city>"):
        CityscapesSegmentation(tmp_path / "nothing", "val")
    with pytest.raises(DatasetNotFoundError, match="DGBENCH_GTA5"):
        GTA5Segmentation(None, "val")
    monkeypatch.setenv("DGBENCH_GTA5", str(tmp_path / "nogta"))
    with pytest.raises(DatasetNotFoundError, match="split.mat"):
        GTA5Segmentation(None, "val")
    rep = cs_check(tmp_path / "nothing")
    assert not rep.ok and "missing" in rep.problems[0]


def test_count_mismatch_lists_files(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val")
    (root / "gtFine/val/bochum/bochum_000001_000020_gtFine_labelIds.png").unlink()
    with pytest.raises(SegmentationDataError, match=r"4 images but 3 labels.*bochum_000001_000020_leftImg8bit"):
        CityscapesSegmentation(root, "val")
    assert not cs_check(root, splits=("val",)).ok


def test_out_of_table_label_values(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val")
    bad = root / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png"
    arr = np.array(Image.open(bad))
    arr[0, :3] = 200
    Image.fromarray(arr).save(bad)
    ds = CityscapesSegmentation(root, "val")
    with pytest.raises(SegmentationDataError, match=r"aachen_000000_000019_gtFine_labelIds.png has value\(s\) \[200\]"):
        ds[0]
    ok = CityscapesSegmentation(root, "val", policy=QuirkPolicy(unknown_labels="ignore"))
    assert (ok[0][1][0, :3] == 255).all()


def test_gta5_split_mat_and_text_list(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", n=8)
    train = GTA5Segmentation(root, "train")
    assert [p.name for p in train.pairs] == ["00001", "00002", "00003", "00004"]
    val = GTA5Segmentation(root, "val")
    assert [p.name for p in val.pairs] == ["00005", "00006"]
    img, lbl, _ = val[0]
    raw = np.array(Image.open(root / "labels/00005.png"))  # palette indices are the labelIds
    assert np.array_equal(lbl.numpy(), LABEL_TO_TRAIN[raw])
    (root / "mine.txt").write_text("# my list\n7\nimages/00008.png\n")
    assert [p.name for p in GTA5Segmentation(root, "test", split_file=root / "mine.txt").pairs] == ["00007", "00008"]
    # The quarter of the train split is seeded: same seed, same subset; it is a subset.
    q1 = GTA5Segmentation(root, "train", fraction=0.5, subset_seed=3)
    q2 = GTA5Segmentation(root, "train", fraction=0.5, subset_seed=3)
    assert [p.name for p in q1.pairs] == [p.name for p in q2.pairs] and len(q1) == 2
    assert {p.name for p in q1.pairs} <= {p.name for p in train.pairs}
    # Resized to the paper's training size when asked.
    small = GTA5Segmentation(root, "val", base_size=(32, 16))
    img, lbl, _ = small[0]
    assert img.shape == (3, 16, 32) and lbl.shape == (16, 32)


def test_gta5_split_frame_without_file(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", n=8)
    (root / "images/00002.png").unlink()
    (root / "labels/00002.png").unlink()
    with pytest.raises(SegmentationDataError, match=r"00002.png"):
        GTA5Segmentation(root, "train")


def test_gta5_size_mismatch_policies(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", n=8)
    lab = Image.open(root / "labels/00003.png")
    lab.resize((60, 30), Image.NEAREST).save(root / "labels/00003.png")
    with pytest.raises(SegmentationDataError, match=r"00003.png 60x30 vs 00003.png 64x32.*--gta5-mismatch"):
        GTA5Segmentation(root, "train")
    with pytest.warns(QuirkWarning, match="00003.png"):
        skipped = GTA5Segmentation(root, "train", policy=QuirkPolicy(size_mismatch="skip"))
    assert [p.name for p in skipped.pairs] == ["00001", "00002", "00004"]
    assert skipped.describe()["quirks"][0]["action"] == "skip"
    with pytest.warns(QuirkWarning):
        resized = GTA5Segmentation(root, "train", policy=QuirkPolicy(size_mismatch="resize-label"))
    img, lbl, name = resized[2]
    assert name == "00003" and lbl.shape == (32, 64)
    rep = gta_check(root)
    assert rep.ok and any("size_mismatch" in n for n in rep.notes)


def test_unreadable_file_policy(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", n=8)
    (root / "images/00004.png").write_bytes(b"not a png")
    with pytest.raises(CorruptImageError, match="00004.png"):
        GTA5Segmentation(root, "train")
    with pytest.warns(QuirkWarning, match="unreadable"):
        ds = GTA5Segmentation(root, "train", policy=QuirkPolicy(unreadable="skip"))
    assert [p.name for p in ds.pairs] == ["00001", "00002", "00003"]


def test_cityscapes_size_mismatch_is_an_error_with_names(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val")
    p = root / "gtFine/val/bochum/bochum_000000_000019_gtFine_labelIds.png"
    Image.open(p).resize((32, 16), Image.NEAREST).save(p)
    with pytest.raises(SegmentationDataError, match="bochum_000000_000019_gtFine_labelIds.png 32x16"):
        CityscapesSegmentation(root, "val")
    rep = cs_check(root, splits=("val",))
    assert not rep.ok and "size_mismatch" in rep.problems[0]


def test_doctor_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgbench.cli.seg import _seg_doctor_rows

    make_cityscapes(tmp_path / "cs", split="train")
    make_cityscapes(tmp_path / "cs", split="val")
    monkeypatch.setenv("DGBENCH_CITYSCAPES", str(tmp_path / "cs"))
    monkeypatch.delenv("DGBENCH_GTA5", raising=False)
    rows = {r[0]: r for r in _seg_doctor_rows()}
    assert rows["cityscapes"][2] == "ok" and "val: 4 pairs" in rows["cityscapes"][3]
    assert rows["gta5"][2] == "not configured" and "DGBENCH_GTA5" in rows["gta5"][3]

"""The built-in digit-scenes pair: generator, small DeepLabs, shipped checkpoints and the 2x2 table."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dgbench.data.digit_scenes import BACKGROUND, INK_THRESHOLD, NUM_CLASSES, SCENE_SIZE, DigitScenes, make_scenes
from dgbench.data.digits import digit_images
from dgbench.models import create_model, list_models
from dgbench.models.deeplab import builtin_scene_checkpoints, scene_manifest
from dgbench.protocols.segmentation import run_cross_domain_segmentation
from dgbench.results.tables import render_table

SHIPPED = ("deeplab_small_resnet", "deeplab_small_resnet_ibn_a", "deeplab_small_resnet_ibn_b")


def test_scenes_are_deterministic_and_labelled_from_ink() -> None:
    a_img, a_lab = make_scenes("digit-scenes", "test", n=20)
    b_img, b_lab = make_scenes("digit-scenes", "test", n=20)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert a_img.shape == (20, SCENE_SIZE, SCENE_SIZE, 3) and a_lab.shape == (20, SCENE_SIZE, SCENE_SIZE)
    grey = a_img[..., 0].astype(int)
    ink = np.round(grey * 16 / 255)
    assert ((a_lab == BACKGROUND) == (grey == 0)).all()  # empty canvas is background, and only it
    assert (a_lab[(ink > 0) & (ink < INK_THRESHOLD)] == 255).all()  # faint rims are ignored
    fg = ink >= INK_THRESHOLD
    assert (a_lab[fg] < 10).all()
    assert set(np.unique(a_lab)) <= set(range(NUM_CLASSES)) | {255}
    typeset_img, _ = make_scenes("typeset-digit-scenes", "test", n=20)
    assert not np.array_equal(typeset_img, a_img)


def test_train_scenes_use_only_train_digits() -> None:
    # Every digit pasted in a train scene is one of the train split's 8x8 digits.
    digits, _ = digit_images("digits", "train")
    known = {d.tobytes() for d in digits}
    img, _ = make_scenes("digit-scenes", "train", n=5)
    cell = SCENE_SIZE // 2
    for scene in img[..., 0]:
        for y in range(0, SCENE_SIZE, cell):
            for x in range(0, SCENE_SIZE, cell):
                block = scene[y : y + cell, x : x + cell]
                if block.any():
                    small = np.round(block[:: cell // 8, :: cell // 8].astype(int) * 16 / 255).astype(np.uint8)
                    assert small.tobytes() in known


def test_small_deeplabs_for_every_small_variant() -> None:
    names = set(list_models("deeplab_small_*"))
    assert set(SHIPPED) <= names
    m = create_model("deeplab_small_resnet_ibn_b").eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, SCENE_SIZE, SCENE_SIZE)).shape == (2, NUM_CLASSES, SCENE_SIZE, SCENE_SIZE)
    ds = DigitScenes("typeset-digit-scenes", "test", n=3)
    img, lab, name = ds[0]
    assert img.dtype == torch.uint8 and lab.dtype == torch.int64 and name.startswith("typeset-digit-scenes")


@pytest.mark.skipif(not scene_manifest(), reason="no shipped digit-scene checkpoints in this checkout")
def test_shipped_checkpoints_give_the_2x2_table(capsys: pytest.CaptureFixture[str]) -> None:
    test_sets = {d: DigitScenes(d, "test") for d in ("digit-scenes", "typeset-digit-scenes")}
    records = []
    for model in SHIPPED:
        ckpts = builtin_scene_checkpoints(model)
        assert set(ckpts) == {"digit-scenes", "typeset-digit-scenes"}, model
        recs = run_cross_domain_segmentation(model, ckpts, test_sets)
        for r in recs:
            # The evaluation reproduces the in-domain numbers recorded when the checkpoints were made.
            entry = scene_manifest()[f"{model}-{r['train_domain']}.pth"]
            assert r["metrics"]["miou"] == pytest.approx(entry["eval"][r["test_domain"]]["miou"], abs=0.5)
        records += recs
    table = render_table(records, kind="cross-domain", fmt="markdown")
    print(table)
    assert "deeplab_small_resnet_ibn_b" in table and "typeset-digit-scenes" in table


def test_generic_cross_domain_protocol_takes_the_segmentation_evaluator() -> None:
    from dgbench.protocols.cross_domain import Domain, cross_domain
    from dgbench.protocols.segmentation import segmentation_evaluate

    torch.manual_seed(0)
    net = create_model("deeplab_small_resnet")
    domains = [Domain(d, lambda: net, DigitScenes(d, "test", n=3)) for d in ("digit-scenes", "typeset-digit-scenes")]
    recs = cross_domain("deeplab_small_resnet", domains, segmentation_evaluate(), task="segmentation")
    assert [(r["train_domain"], r["test_domain"]) for r in recs] == [
        ("digit-scenes", "digit-scenes"), ("digit-scenes", "typeset-digit-scenes"),
        ("typeset-digit-scenes", "typeset-digit-scenes"), ("typeset-digit-scenes", "digit-scenes"),
    ]
    cross = recs[1]
    assert cross["reference"] == "digit-scenes" and set(cross["drop"]) == {"miou", "pixel_acc"}
    assert cross["task"] == "segmentation" and len(cross["per_class_iou"]) == NUM_CLASSES

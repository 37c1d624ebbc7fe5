"""The built-in image sets (digits, scene-digit crops, cue-conflict digits) share one resize ->
centre crop -> three-channel preparation; its output is pinned to what each set's own copy of it
produced before they were merged (sha256 of the first 50 images, computed with that code)."""
from __future__ import annotations

import hashlib

import pytest
import torch

from dgbench.builtin.cue_conflict import DigitCueConflict
from dgbench.builtin.digit_crops import SceneDigitCrops
from dgbench.builtin.digits import DigitsDataset, to_rgb
from dgbench.data.base import Preprocess
from dgbench.errors import DgbenchError

# preprocessing -> (digits, cue-conflict digits, scene-digit crops): the first 50 images' sha256[:16]
PINNED = {
    (32, 32, "nearest"): ("23dd080081e8f98f", "847ca967a0056da1", "8bb2ba63c6edca69"),
    (40, 32, "bilinear"): ("1aa984e4ba6a316f", "2d4526527a307919", "27fc24228eac5090"),
    (64, 56, "nearest"): ("1b11ab96b28c5e6a", "ab21f13f7946b8be", "c380145c774bdce8"),
    (36, 30, "bicubic"): ("6c987be3da0bc318", "a4bcb373372ce04d", "f97388f1854c12b4"),
    (24, 20, "bilinear"): ("a0243f4d7c67e2fc", "b87b7bbf440261f8", "d690c0fecdaf9615"),
}


def _sha(t: torch.Tensor) -> str:
    assert t.dtype == torch.uint8 and t.shape[1] == 3 and torch.equal(t[:, 0], t[:, 2])
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("geometry", list(PINNED))
def test_prepared_images_are_the_pinned_ones(geometry):
    p = Preprocess(*geometry)
    got = tuple(_sha(ds.images[:50]) for ds in (DigitsDataset("digits", "test", p), DigitCueConflict(p),
                                                  SceneDigitCrops(preprocess=p)))
    assert got == PINNED[geometry]


def test_to_rgb_is_pinned():
    glyphs = DigitsDataset("digits", "test").glyphs[:20]
    assert _sha(to_rgb(glyphs, size=48, interpolation="bilinear")) == "c71686d2008de5a0"


@pytest.mark.parametrize("make", [lambda p: DigitsDataset("digits", "test", p), DigitCueConflict,
                                  lambda p: SceneDigitCrops(preprocess=p)])
def test_a_crop_larger_than_the_resize_is_one_line(make):
    with pytest.raises(DgbenchError, match="crop 40 larger than resize 32 for "):
        make(Preprocess(32, 40, "nearest"))

"""The built-in digits data: determinism, quantization, split and the engine's dataset contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dgbench.data import digits as D
from dgbench.data import typeset as T
from dgbench.data.base import Preprocess, build_dataset
from dgbench.errors import DgbenchError, UnknownNameError


def test_typeset_generation_is_deterministic_and_seeded():
    labels = np.repeat(np.arange(10), 3)
    a, b = T.generate(labels, seed=5), T.generate(labels, seed=5)
    assert a.tobytes() == b.tobytes()
    assert T.generate(labels, seed=6).tobytes() != a.tobytes()


def test_fingerprint_stable_across_builds():
    # Clear the in-process caches so the second build really regenerates the glyphs.
    for domain in D.DOMAINS:
        first = D.DigitsDataset(domain, "test").fingerprint()
        D._real.cache_clear()
        D._typeset.cache_clear()
        assert D.DigitsDataset(domain, "test").fingerprint() == first
    assert D.DigitsDataset("digits", "test").fingerprint() != D.DigitsDataset("typeset-digits", "test").fingerprint()
    assert D.DigitsDataset("digits", "test").fingerprint() != D.DigitsDataset("digits", "train").fingerprint()
    assert D.DigitsDataset("typeset-digits", "test", seed=1).fingerprint() != D.DigitsDataset("typeset-digits", "test").fingerprint()


@pytest.mark.parametrize("domain", D.DOMAINS)
def test_glyphs_quantized_like_the_uci_scans(domain):
    x, y = D.digit_images(domain, "all")
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8
    assert x.min() == 0 and x.max() == 16
    assert set(np.unique(y)) == set(range(10))
    # Both domains use the whole 0..16 range, not just the extremes.
    assert len(np.unique(x)) == 17


def test_block_counts_of_a_known_bitmap():
    bitmap = np.zeros((32, 32), dtype=bool)
    bitmap[:4, :4] = True  # one full block
    bitmap[4, 4] = True  # one pixel of the next block on the diagonal
    counts = T.block_counts(bitmap)
    assert counts.shape == (8, 8)
    assert counts[0, 0] == 16 and counts[1, 1] == 1 and counts.sum() == 17


def test_render_bitmap_is_binary_and_framed():
    bm = T.render_bitmap(7, T.font_paths()[0], stroke=2, height=30, dx=0, dy=0)
    assert bm.shape == (32, 32) and bm.dtype == bool
    rows = np.flatnonzero(bm.any(axis=1))
    assert rows[-1] - rows[0] + 1 == 30  # the ink spans the requested height


def test_split_is_stratified_disjoint_and_documented_size():
    _, y = D.digit_images("digits", "all")
    parts = D.split_indices(y)
    assert len(parts["train"]) == 1198 and len(parts["test"]) == 599
    assert not set(parts["train"]) & set(parts["test"])
    frac = np.bincount(y[parts["test"]]) / np.bincount(y)
    assert np.all(np.abs(frac - 1 / 3) < 0.01)
    for domain in D.DOMAINS:
        tr, te = D.digit_images(domain, "train")[1], D.digit_images(domain, "test")[1]
        assert len(tr) == 1198 and len(te) == 599


def test_dataset_contract_and_lossless_upsampling():
    ds = build_dataset("digits", split="test", preprocess=Preprocess(32, 32, "nearest"))
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and 0 <= label < 10
    glyph = D.digit_images("digits", "test")[0][0]
    expect = np.round(glyph.astype(np.float64) * 255 / 16).astype(np.uint8)
    # nearest 4x upsampling: every 4x4 block is one 8x8 cell; channels are equal.
    assert np.array_equal(img[0, ::4, ::4].numpy(), expect)
    assert np.array_equal(img[0].numpy(), np.kron(expect, np.ones((4, 4), dtype=np.uint8)))
    assert torch.equal(img[0], img[2])
    assert ds.describe()["split"] == "test" and ds.describe()["num_samples"] == 599
    assert build_dataset("typeset-digits", split="val", preprocess=Preprocess(32, 32, "nearest")).split == "test"


def test_dataset_follows_a_models_preprocess():
    ds = build_dataset("digits", split="test", preprocess=Preprocess(64, 56, "bilinear"))
    assert ds[0][0].shape == (3, 56, 56)


def test_bad_names_and_roots_are_clear_errors():
    with pytest.raises(UnknownNameError):
        D.digit_images("mnist", "train")
    with pytest.raises(UnknownNameError):
        D.digit_images("digits", "dev")
    with pytest.raises(DgbenchError, match="takes no data root"):
        build_dataset("digits", "/tmp/somewhere")


def test_normalization_constants_match_the_real_train_split():
    x, _ = D.digit_tensors("digits", "train")
    grey = x[:, 0].float() / 255
    assert abs(grey.mean().item() - D.MEAN[0]) < 1e-3
    assert abs(grey.std().item() - D.STD[0]) < 1e-3

"""The corruption shifts: 19 x 5 declared as data, rendered by the library, seeded per image, cached."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corruption_fixtures import TinyDataset, corruption_shifts, photo
from dgbench import corruptions
from dgbench.data.base import Preprocess
from dgbench.errors import SpecError
from dgbench.protocols import style_cache
from dgbench.shifts import KIND_PARAMS, check_params, render_image_shift


def test_the_toml_declares_19_corruptions_x_5_severities_with_their_families() -> None:
    shifts = corruption_shifts()
    assert len(shifts) == 19 * 5
    names = {s.params["corruption"] for s in shifts.values()}
    assert names == set(corruptions.IMAGENET_C) | set(corruptions.EXTRA)
    assert names == set(corruptions.available())  # the library has every one we declare
    for s in shifts.values():
        assert s.name == f"{s.family}-{s.params['severity']}" and s.severity == s.params["severity"]
        assert set(s.params) == set(KIND_PARAMS["corruption"]) and check_params(s.kind, s.params) is None
        assert "s = " in s.formula and "{severity}" not in s.formula
    groups = {s.params["corruption"]: s.params["group"] for s in shifts.values()}
    assert [c for c in corruptions.IMAGENET_C if groups[c] == "noise"] == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert [c for c in corruptions.IMAGENET_C if groups[c] == "digital"] == ["contrast", "elastic_transform", "pixelate", "jpeg_compression"]
    assert {groups[c] for c in corruptions.EXTRA} == {"noise", "blur", "weather", "digital"}


def test_bad_parameter_values_are_named() -> None:
    base = {"corruption": "fog", "severity": 3, "group": "weather", "seed": 0, "work_size": 224}
    assert check_params("corruption", base) is None
    assert "severity 6" in check_params("corruption", {**base, "severity": 6})
    assert "'fogg'" in check_params("corruption", {**base, "corruption": "fogg"})
    assert "group" in check_params("corruption", {**base, "group": "rain"})
    bad = corruption_shifts()["fog-3"].with_params(severity=0)
    with pytest.raises(SpecError, match="corruptions.toml: fog-3: severity 0"):
        style_cache.pin(bad)


def test_every_corruption_at_every_severity_is_uint8_224_deterministic_and_grows_with_severity() -> None:
    shifts = corruption_shifts()
    crop = torch.from_numpy(photo("astronaut")).permute(2, 0, 1).contiguous()
    for name in corruptions.IMAGENET_C + corruptions.EXTRA:
        dist = {}
        for sev in corruptions.SEVERITIES:
            out = render_image_shift(shifts[f"{name}-{sev}"], crop, "img-0")
            assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 224, 224), name
            dist[sev] = (out.int() - crop.int()).abs().float().mean().item()
            if sev in (1, 5):  # same sample id and seed: the same pixels
                assert torch.equal(out, render_image_shift(shifts[f"{name}-{sev}"], crop, "img-0")), name
        assert dist[5] > dist[1], f"{name}: severity 5 moved the image {dist[5]:.2f}, severity 1 {dist[1]:.2f}"


def test_seed_comes_from_the_sample_id_the_corruption_and_the_protocol_seed_not_the_severity() -> None:
    s = corruptions.corruption_seed
    assert s("a", "fog", 0) == s("a", "fog", 0)
    assert len({s("a", "fog", 0), s("b", "fog", 0), s("a", "snow", 0), s("a", "fog", 1)}) == 4
    shifts = corruption_shifts()
    crop = torch.from_numpy(photo("coffee")).permute(2, 0, 1).contiguous()
    g = shifts["gaussian_noise-3"]
    assert not torch.equal(render_image_shift(g, crop, "a"), render_image_shift(g, crop, "b"))
    assert not torch.equal(render_image_shift(g, crop, "a"), render_image_shift(g.with_params(seed=1), crop, "a"))
    # common random numbers: severities 1 and 5 of one image draw the same normal samples, so the
    # noise of severity 5 is 0.38/0.08 times that of severity 1 wherever neither clips
    x = crop.permute(1, 2, 0).numpy().astype(np.float64)
    n1 = render_image_shift(shifts["gaussian_noise-1"], crop, "a").permute(1, 2, 0).numpy() - x
    n5 = render_image_shift(shifts["gaussian_noise-5"], crop, "a").permute(1, 2, 0).numpy() - x
    mid = (x > 120) & (x < 136) & (np.abs(n5) < 100)
    assert mid.sum() > 100 and np.corrcoef(n1[mid], n5[mid])[0, 1] > 0.95


def test_global_numpy_rng_is_left_as_it_was() -> None:
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    corruptions.corrupt(photo("astronaut"), "gaussian_noise", 2, seed=7)
    assert np.random.rand() == expected


def test_small_crops_are_corrupted_at_the_working_size_and_come_back_at_theirs() -> None:
    assert corruptions.work_factor(32, 32, 224) == 7 and corruptions.work_factor(224, 224, 224) == 1
    small = np.ascontiguousarray(photo("astronaut", 32))
    for name in ("defocus_blur", "frost", "glass_blur", "pixelate"):
        out = corruptions.corrupt(small, name, 3, seed=1, work_size=224)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - small).mean() > 1.0, name
    with pytest.raises(corruptions.CorruptionError, match="below the library's 32 px"):
        corruptions.corrupt(np.zeros((8, 8, 3), np.uint8), "fog", 1, seed=0, work_size=8)


def test_renderings_are_cached_losslessly_resumably_and_keyed_by_library_version(tmp_path: Path) -> None:
    ds = TinyDataset()
    prep = Preprocess(256, 224, "bilinear")
    spec = corruption_shifts()["snow-2"]
    rep = style_cache.prepare(spec, ds, prep, workers=0, progress=False, root=tmp_path)
    assert (rep.rendered, rep.reused) == (3, 0)
    assert rep.spec.params["library"] == "imagecorruptions-imaug"
    assert rep.spec.params["library_version"] == corruptions.library_version()
    manifest = style_cache.read_manifest(rep.folder)
    assert manifest["shift_spec"]["params"]["library_version"] == corruptions.library_version()
    for i in range(len(ds)):  # lossless: the PNG is exactly what the library rendered for that image
        cached = style_cache.read_png(style_cache.png_path(rep.folder, ds.sample_id(i)))
        assert torch.equal(cached, render_image_shift(spec, ds[i][0], ds.sample_id(i)))
    style_cache.png_path(rep.folder, ds.sample_id(1)).unlink()
    again = style_cache.prepare(spec, ds, prep, workers=0, progress=False, root=tmp_path)
    assert (again.rendered, again.reused, again.folder) == (1, 2, rep.folder)  # resumed, same folder
    other = style_cache.prepare(spec.with_params(seed=1), ds, prep, workers=0, progress=False, root=tmp_path)
    assert other.folder != rep.folder  # the seed keys the cache
    version_bumped = style_cache.renderer_id(rep.spec.with_params(library_version="9.9.9"))
    assert version_bumped != style_cache.renderer_id(rep.spec)
    spec_run, source = style_cache.rendered_source(spec, ds, prep, root=tmp_path, progress=False, workers=0)
    assert spec_run == rep.spec and torch.equal(source(ds, 2, ds[2][0]), style_cache.read_png(style_cache.png_path(rep.folder, "chelsea")))


def test_corruptions_lite_runs_offline_on_the_builtin_digits_and_reruns_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appearance_fixtures import env_isolated
    from dgbench.protocols import RunRequest, run

    env_isolated(monkeypatch, tmp_path)
    req = dict(model="ibn_a", dataset="digits", shifts=["gaussian_noise-3", "fog-3"], limit=12, workers=0, progress=False, store=False)
    first = run("corruptions-lite", RunRequest(**req))
    assert [r["shift"] for r in first.records] == ["origin", "gaussian_noise-3", "fog-3"]
    fog = first.records[2]
    assert fog["shift_spec"]["params"]["library_version"] == corruptions.library_version()
    assert fog["reference"] == "origin" and fog["metrics"]["top1_err"] > first.records[0]["metrics"]["top1_err"]
    pngs = sorted((tmp_path / "cache" / "styles").rglob("*.png"))
    assert len(pngs) == 2 * 12 and all(style_cache.read_png(p).shape == (3, 32, 32) for p in pngs[:3])
    stamps = [p.stat().st_mtime_ns for p in pngs]
    again = run("corruptions-lite", RunRequest(**req))  # read from the cache: nothing re-rendered, same numbers
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache" / "styles").rglob("*.png"))] == stamps
    assert [r["metrics"] for r in again.records] == [r["metrics"] for r in first.records]


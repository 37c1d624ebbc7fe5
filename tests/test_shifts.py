"""The shifts' formulas on known pixels, clipping, the shipped specs, and spec validation errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dgbench.errors import SpecError
from dgbench.protocols import get_protocol, get_shift, load_specs, protocol_shifts, registry
from dgbench.shifts import AffineBatchShift, ShiftSpec, apply_affine, clip_bounds, cv_stylize, normalize, render_image_shift

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def pixels() -> torch.Tensor:
    # known pixels: black, white, mid-grey and a colour, as a 1 x 3 x 2 x 2 uint8 batch
    rgb = [[0, 0, 0], [255, 255, 255], [128, 128, 128], [250, 10, 100]]
    return torch.tensor(rgb, dtype=torch.uint8).T.reshape(1, 3, 2, 2)


def by_hand(p: torch.Tensor) -> torch.Tensor:
    """normalize() written out per channel, in float64."""
    out = torch.empty(p.shape, dtype=torch.float64)
    for c in range(3):
        out[:, c] = (p[:, c].double() / 255.0 - MEAN[c]) / STD[c]
    return out


def both_paths(spec: ShiftSpec, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ref = apply_affine(normalize(u, MEAN, STD), spec, MEAN, STD)
    fused = AffineBatchShift(spec, MEAN, STD, torch.device("cpu"))(u.float())
    return ref, fused


def test_origin_is_identity_normalization() -> None:
    u = pixels()
    ref, fused = both_paths(get_shift("origin"), u)
    torch.testing.assert_close(ref.double(), by_hand(u), rtol=0, atol=1e-6)
    torch.testing.assert_close(fused, ref, rtol=0, atol=1e-5)


def test_rgb_plus_50_adds_50_pixel_units_to_every_channel_without_clipping() -> None:
    u = pixels()
    ref, fused = both_paths(get_shift("rgb+50"), u)
    want = by_hand(u.double() + 50)  # 255 + 50 = 305: beyond white, on purpose
    torch.testing.assert_close(ref.double(), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(fused.double(), want, rtol=0, atol=1e-5)
    _, hi = clip_bounds(MEAN, STD)
    assert (ref[0, :, 0, 1] > hi).all(), "no clipping by default: white + 50 lies above the white level"


def test_r_plus_50_touches_red_only() -> None:
    u = pixels()
    ref, fused = both_paths(get_shift("r+50"), u)
    shifted = u.double().clone()
    shifted[:, 0] += 50
    torch.testing.assert_close(fused.double(), by_hand(shifted), rtol=0, atol=1e-5)
    torch.testing.assert_close(ref[:, 1:], normalize(u, MEAN, STD)[:, 1:])
    # the red offset is 50 / (255 std_R) in normalized units
    delta = (ref - normalize(u, MEAN, STD))[0, 0]
    assert torch.allclose(delta, torch.full_like(delta, 50 / (255 * STD[0])), atol=1e-6)


def test_std_x15_scales_the_normalized_tensor_about_the_mean() -> None:
    u = pixels()
    ref, fused = both_paths(get_shift("std-x1.5"), u)
    torch.testing.assert_close(ref.double(), 1.5 * by_hand(u), rtol=0, atol=1e-5)
    torch.testing.assert_close(fused.double(), 1.5 * by_hand(u), rtol=0, atol=1e-5)
    # the same in pixel space: p' = 255 mean + 1.5 (p - 255 mean), unclipped
    mean_px = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(ref.double(), by_hand(mean_px + 1.5 * (u.double() - mean_px)), rtol=0, atol=1e-5)
    lo, hi = clip_bounds(MEAN, STD)
    assert (ref[0, :, 0, 0] < lo).all() and (ref[0, :, 0, 1] > hi).all()  # black/white pushed out of range


@pytest.mark.parametrize("name", ["rgb+50", "r+50", "std-x1.5"])
def test_clip_option_clamps_to_the_valid_pixel_range(name: str) -> None:
    base = get_shift(name)
    assert base.clip is False
    spec = ShiftSpec(base.name + "-clip", base.kind, base.params, clip=True)
    u = pixels()
    ref, fused = both_paths(spec, u)
    lo, hi = clip_bounds(MEAN, STD)
    for x in (ref, fused):
        assert (x >= lo.view(1, 3, 1, 1) - 1e-6).all() and (x <= hi.view(1, 3, 1, 1) + 1e-6).all()
    # clipping in normalized space == clipping the shifted pixels to 0..255
    unclipped = apply_affine(normalize(u, MEAN, STD), base, MEAN, STD)
    px = (unclipped.double() * torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
          + torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) * 255
    torch.testing.assert_close(ref.double(), by_hand(px.clamp(0, 255)), rtol=0, atol=1e-5)


def test_cv_stylize_is_deterministic_uint8_to_uint8() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    a, b = cv_stylize(img), cv_stylize(img)
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, b) and not np.array_equal(a, img)
    crop = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    out = render_image_shift(get_shift("cv-stylize"), crop)
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(a).permute(2, 0, 1))


def test_shipped_specs_state_units_and_formula_and_expand_families() -> None:
    reg = registry()
    for spec in reg.shifts.values():
        assert spec.units and spec.formula, spec.name
    assert reg.families["rgb+"] == [f"rgb+{v}" for v in range(10, 101, 10)]
    assert reg.families["std-x"] == ["std-x1.25", "std-x1.5", "std-x1.75", "std-x2"]
    s = get_shift("std-x1.75")
    assert (s.family, s.severity, s.params["factor"]) == ("std-x", 1.75, 1.75)
    assert "1.75 * x_norm" in s.formula
    assert [x.name for x in protocol_shifts("appearance")] == ["origin", "rgb+50", "r+50", "std-x1.5", "monet"]
    assert [x.name for x in protocol_shifts("appearance-lite")] == ["origin", "rgb+50", "r+50", "std-x1.5"]
    assert [x.name for x in protocol_shifts("appearance", ["std-x1.5"])] == ["origin", "std-x1.5"]
    assert len(protocol_shifts("sweep-rgb")) == 11
    assert get_protocol("appearance").fallbacks == {"monet": "cv-stylize"}
    assert "source" not in s.to_dict()  # records hash the spec, not where the file lives


BAD = {
    "unknown kind": ('[shifts.x]\nkind = "blur"\nunits = "u"\nformula = "f"\n', "shifts.x.kind"),
    "missing units": ('[shifts.x]\nkind = "origin"\nformula = "f"\n', "'units'"),
    "parameter type": ('[shifts.x]\nkind = "add"\nvalue = "fifty"\nchannels = "rgb"\nunits = "u"\nformula = "f"\n', "shifts.x.value"),
    "missing parameter": ('[shifts.x]\nkind = "scale_std"\nunits = "u"\nformula = "f"\n', "'factor'"),
    "unknown field": ('[shifts.x]\nkind = "origin"\nunits = "u"\nformula = "f"\ncolour = 3\n', "shifts.x.colour"),
    "bad channel": ('[shifts.x]\nkind = "add"\nvalue = 5\nchannels = "rgbx"\nunits = "u"\nformula = "f"\n', "shifts.x.channels"),
    "clip type": ('[shifts.x]\nkind = "add"\nvalue = 5\nchannels = "r"\nclip = "yes"\nunits = "u"\nformula = "f"\n', "shifts.x.clip"),
    "family template": ('[families.f]\nkind = "scale_std"\nparam = "factor"\nseverities = [2]\nname = "f"\nunits = "u"\nformula = "f"\n', "families.f.name"),
    "unknown protocol shift": ('[protocols.p]\nshifts = ["origin", "nope"]\n', "protocols.p.shifts"),
    "unknown table": ('[shiftz.x]\nkind = "origin"\n', "shiftz"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_spec_errors_name_file_and_field(tmp_path: Path, case: str) -> None:
    text, field = BAD[case]
    (tmp_path / "base.toml").write_text('[shifts.origin]\nkind = "origin"\nunits = "none"\nformula = "x"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(SpecError) as exc:
        load_specs([tmp_path])
    assert str(bad) in str(exc.value) and field in str(exc.value)


def test_user_specs_add_a_shift_without_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.toml").write_text(
        '[shifts."g+30"]\nkind = "add"\nvalue = 30\nchannels = "g"\nunits = "pixels"\nformula = "p_G + 30"\n'
        '[protocols.mine]\nshifts = ["origin", "g+30"]\n'
    )
    monkeypatch.setenv("DGBENCH_TRANSFORMS", str(tmp_path))
    assert [s.name for s in protocol_shifts("mine")] == ["origin", "g+30"]
    with pytest.raises(SpecError, match="defined twice"):
        (tmp_path / "dup.toml").write_text('[shifts.origin]\nkind = "origin"\nunits = "n"\nformula = "x"\n')
        monkeypatch.setenv("DGBENCH_TRANSFORMS", str(tmp_path) + "")
        load_specs()


def test_cv_stylize_keeps_the_content_of_small_crops() -> None:
    # A bright square on a dark 32x32 crop (the built-in digits' size). Run at its own size, the
    # filter's 60-pixel window wipes the square out; run at the 224-pixel working size it stays.
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = 220
    inside, outside = (slice(10, 22), slice(10, 22)), (slice(0, 4), slice(0, 32))

    def contrast(x: np.ndarray) -> float:
        return float(x[inside].mean()) - float(x[outside].mean())

    native = cv_stylize(img, work_size=32)
    worked = cv_stylize(img, work_size=224)
    assert contrast(worked) > 0.5 * contrast(img)
    assert contrast(native) < 0.5 * contrast(img)
    big = np.zeros((224, 224, 3), np.uint8)  # at 224 and above nothing is resampled
    big[50:170, 50:170] = 220
    assert np.array_equal(cv_stylize(big, work_size=224), cv_stylize(big, work_size=1))

"""Appearance shifts: one definition per kind, each with its exact formula.

A shift is data (a :class:`ShiftSpec` loaded from ``transforms/*.toml``); its *kind* says how it is
computed. Two families of kinds:

* **affine kinds** (``origin``, ``add``, ``scale_std``) are affine maps of the normalized tensor,
  so they are applied to the already decoded batch: an image is decoded and resized once per
  protocol, never once per shift. With ``p`` a pixel on the 0..255 scale and
  ``x_norm = (p / 255 - mean_c) / std_c`` the model's input:

  - ``origin``:    ``x_norm' = x_norm``
  - ``add``:       ``p' = p + v`` on the chosen channels, i.e. ``x_norm'_c = x_norm_c + v / (255 std_c)``
  - ``scale_std``: ``x_norm' = f * x_norm`` (deviation from the normalization mean scaled by f)

  No clipping by default: the paper's exact 0.00 drop of IBN-b under std x1.5 is only possible
  without it (IN after a bias-free first convolution cancels any positive scale of the input).
  With ``clip = true`` the shifted image is clipped to the valid pixel range, which in normalized
  units is ``clamp(x_norm', (0 - mean_c) / std_c, (1 - mean_c) / std_c)``.

* **image kinds** (``cyclegan``, ``cv_stylize``, ``corruption``) map a uint8 RGB crop to a uint8 RGB
  crop. They are rendered once and cached (``dgbench prepare``); ``cv_stylize`` and ``corruption``
  are cheap enough to also run on the fly in the data-loader workers. ``corruption`` is one of the
  ImageNet-C common corruptions at a severity 1..5 (:mod:`dgbench.corruptions`), seeded per image
  from the sample id, so it needs the sample id besides the crop.

Every affine shift is folded with normalization into one per-channel multiply-add on the uint8
batch: ``x' = u * a_c + b_c`` (see :func:`affine_coefficients`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

AFFINE_KINDS = ("origin", "add", "scale_std")
IMAGE_KINDS = ("cyclegan", "cv_stylize", "corruption")
KINDS = AFFINE_KINDS + IMAGE_KINDS

# Kind -> {parameter: python type(s)}; every parameter is required.
KIND_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "origin": {},
    "add": {"value": (int, float), "channels": (str, list)},
    "scale_std": {"factor": (int, float)},
    "cyclegan": {"style": (str,), "weights": (str,)},
    "cv_stylize": {"sigma_s": (int, float), "sigma_r": (int, float), "work_size": (int,)},
    # corruption: the library's name, severity 1..5, its ImageNet-C group, the protocol seed of
    # the per-image randomness, and the working size of kernels that assume 224 px.
    "corruption": {"corruption": (str,), "severity": (int,), "group": (str,), "seed": (int,), "work_size": (int,)},
}


def check_params(kind: str, params: dict[str, Any]) -> str | None:
    """What is wrong with a shift's parameter *values* (types are checked by ``KIND_PARAMS``), or None.

    Checked before a shift is rendered (``style_cache.pin``), where the message names the file the
    shift came from and the shift.
    """
    if kind == "corruption":
        from .corruptions import check_params as check_corruption

        return check_corruption(params)
    return None


CHANNEL_INDEX = {"r": 0, "g": 1, "b": 2}


@dataclass(frozen=True)
class ShiftSpec:
    """One named shift: kind, parameters, units, formula, clipping, and its family if any."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    clip: bool = False
    units: str = ""
    formula: str = ""
    description: str = ""
    family: str | None = None
    severity: float | None = None
    source: str = ""  # file it was loaded from (for error messages; not part of the identity)

    @property
    def is_affine(self) -> bool:
        return self.kind in AFFINE_KINDS

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS

    def to_dict(self) -> dict[str, Any]:
        """What a result record stores (everything but the source path, so checkout and wheel agree)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "params": dict(self.params),
            "clip": self.clip,
            "units": self.units,
            "formula": self.formula,
            "family": self.family,
            "severity": self.severity,
        }

    def with_params(self, **params: Any) -> "ShiftSpec":
        """A copy with extra parameters (e.g. the generator sha256 a Monet run actually used)."""
        merged = {**self.params, **params}
        return ShiftSpec(
            self.name, self.kind, merged, self.clip, self.units, self.formula, self.description,
            self.family, self.severity, self.source,
        )


def channel_indices(channels: str | list[str]) -> list[int]:
    """``"rgb"`` -> [0, 1, 2], ``"r"`` -> [0], ``["g", "b"]`` -> [1, 2]."""
    letters = list(channels) if isinstance(channels, str) else [str(c) for c in channels]
    out = []
    for c in letters:
        if c.lower() not in CHANNEL_INDEX:
            raise ValueError(f"unknown channel {c!r} (use r, g, b)")
        out.append(CHANNEL_INDEX[c.lower()])
    return sorted(set(out))


def affine_coefficients(
    spec: ShiftSpec, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(a, b)`` with ``shift(normalize(u)) = u * a + b`` for a uint8-valued ``u``.

    ``normalize(u) = u / (255 std) - mean / std``; an affine shift ``x -> s * x + t`` composes to
    ``a = s / (255 std)`` and ``b = t - s * mean / std``. Computed in float64, returned as float32.
    """
    m = torch.tensor(mean, dtype=torch.float64)
    s_ = torch.tensor(std, dtype=torch.float64)
    scale = torch.ones_like(m)
    offset = torch.zeros_like(m)
    if spec.kind == "add":
        for c in channel_indices(spec.params["channels"]):
            offset[c] = float(spec.params["value"]) / (255.0 * s_[c])
    elif spec.kind == "scale_std":
        scale[:] = float(spec.params["factor"])
    elif spec.kind != "origin":
        raise ValueError(f"shift {spec.name!r} of kind {spec.kind!r} is not affine")
    a = scale / (255.0 * s_)
    b = offset - scale * m / s_
    return a.float(), b.float()


def clip_bounds(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized values of pixel 0 and pixel 255 per channel: ``(0 - mean) / std``, ``(1 - mean) / std``."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    return ((0 - m) / s).float(), ((1 - m) / s).float()


def normalize(u: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``x_norm = (u / 255 - mean) / std`` for a uint8 batch ``[B, 3, H, W]`` (float32 result)."""
    m = torch.tensor(mean, dtype=torch.float32, device=u.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=u.device).view(1, -1, 1, 1)
    return (u.float() / 255.0 - m) / s


def apply_affine(
    x_norm: torch.Tensor, spec: ShiftSpec, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Apply an affine shift to a *normalized* batch ``[B, 3, H, W]`` (the reference definition).

    - ``origin``: ``x``;
    - ``add``: ``x_c + value / (255 std_c)`` on the chosen channels;
    - ``scale_std``: ``factor * x``;
    - then, only if ``spec.clip``: ``clamp(x, (0 - mean_c) / std_c, (1 - mean_c) / std_c)``.
    """
    s_ = torch.tensor(std, dtype=torch.float64)
    x = x_norm
    if spec.kind == "add":
        delta = torch.zeros(len(std), dtype=torch.float64)
        for c in channel_indices(spec.params["channels"]):
            delta[c] = float(spec.params["value"]) / (255.0 * s_[c])
        x = x + delta.to(x.dtype).to(x.device).view(1, -1, 1, 1)
    elif spec.kind == "scale_std":
        x = x * float(spec.params["factor"])
    elif spec.kind != "origin":
        raise ValueError(f"shift {spec.name!r} of kind {spec.kind!r} is not affine")
    if spec.clip:
        x = clamp_normalized(x, mean, std)
    return x


def clamp_normalized(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    lo, hi = clip_bounds(mean, std)
    shape = (1, -1, 1, 1)
    return torch.maximum(torch.minimum(x, hi.to(x).view(shape)), lo.to(x).view(shape))


class AffineBatchShift:
    """An affine shift fused with normalization: ``uint8 batch -> shifted normalized batch``.

    One multiply-add per element (``u * a_c + b_c``), plus a clamp when the spec clips. Equal to
    ``apply_affine(normalize(u))`` up to float rounding.
    """

    def __init__(self, spec: ShiftSpec, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        self.spec = spec
        a, b = affine_coefficients(spec, mean, std)
        self.a = a.to(device).view(1, -1, 1, 1)
        self.b = b.to(device).view(1, -1, 1, 1)
        lo, hi = clip_bounds(mean, std)
        self.lo = lo.to(device).view(1, -1, 1, 1)
        self.hi = hi.to(device).view(1, -1, 1, 1)

    def __call__(self, u_float: torch.Tensor) -> torch.Tensor:
        """``u_float``: the uint8 batch already converted to float32 (0..255 values)."""
        x = torch.addcmul(self.b, u_float, self.a)
        if self.spec.clip:
            x = torch.maximum(torch.minimum(x, self.hi), self.lo)
        return x


def cv_stylize(rgb: np.ndarray, sigma_s: float = 60.0, sigma_r: float = 0.45, work_size: int = 224) -> np.ndarray:
    """OpenCV's edge-preserving stylization on an ``H x W x 3`` uint8 RGB array (uint8 RGB out).

    The filter's ``sigma_s`` is a window in *pixels*, tuned for photographs. On a small crop (the
    built-in digits are 32x32) it would span the whole image and wipe the content out (chance-level
    error), so the crop is first enlarged by the integer factor ``f = max(1, work_size // min(H, W))``
    (bicubic), stylized, and reduced back by area averaging. At ImageNet's 224 crop ``f = 1``: the
    filter runs on the crop itself.

    ``cv2.stylization`` expects BGR; the image is converted there and back so colours stay put.
    """
    import cv2

    h, w = rgb.shape[:2]
    f = max(1, int(work_size) // min(h, w))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if f > 1:
        bgr = cv2.resize(bgr, (w * f, h * f), interpolation=cv2.INTER_CUBIC)
    out = cv2.stylization(bgr, sigma_s=float(sigma_s), sigma_r=float(sigma_r))
    if f > 1:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out[:, :, ::-1])


def render_image_shift(spec: ShiftSpec, crop: torch.Tensor, sample_id: str | None = None) -> torch.Tensor:
    """Compute an on-the-fly image shift on one uint8 crop ``[3, H, W]`` (``cv_stylize``, ``corruption``).

    ``corruption`` draws its randomness from a seed derived from ``sample_id`` (required there), so
    the same image always gets the same corruption. ``cyclegan`` shifts are never computed here:
    they come from the cache (``dgbench prepare``).
    """
    hwc = crop.permute(1, 2, 0).contiguous().numpy()
    if spec.kind == "cv_stylize":
        out = cv_stylize(hwc, spec.params["sigma_s"], spec.params["sigma_r"], spec.params["work_size"])
    elif spec.kind == "corruption":
        from . import corruptions

        if sample_id is None:
            raise ValueError(f"shift {spec.name!r} is seeded per image: pass the sample id")
        p = spec.params
        seed = corruptions.corruption_seed(sample_id, p["corruption"], p["seed"])
        out = corruptions.corrupt(hwc, p["corruption"], p["severity"], seed, p["work_size"])
    else:
        raise ValueError(f"shift {spec.name!r} ({spec.kind}) cannot be computed per image on the fly")
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()

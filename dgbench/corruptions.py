"""Common corruptions (ImageNet-C, Hendrycks & Dietterich, ICLR 2019), computed by a maintained library.

The corruptions are not written here: they come from ``imagecorruptions-imaug`` (Apache-2.0, the
maintained fork of bethgelab's ``imagecorruptions``; import name ``imagecorruptions``), which
ports the reference ``make_imagenet_c.py`` to any image size without Wand/ImageMagick. This module
only adds what a benchmark needs around it:

* **seeding per image**: every random draw of a corruption comes from a seed derived from the
  sample id, the corruption name and the protocol seed (:func:`corruption_seed`), so a rerun,
  another worker count or another machine renders the same pixels. The severity is deliberately
  *not* part of the seed: the five severities of one image share their random numbers (common
  random numbers), so a severity curve shows the corruption's strength, not resampling noise.
* **a working size**: several kernels assume ImageNet's 224 px crop (defocus disks of radius 3-10
  px, motion-blur radii of 10-20 px, the frost textures, the fog fractal). On a smaller crop (the
  built-in digits are 32x32) the crop is enlarged by the integer factor
  ``f = max(1, work_size // min(H, W))`` (bicubic), corrupted, and reduced back (area averaging),
  as ``cv_stylize`` does. At the 224 crop ``f = 1``: the library runs on the crop itself.
* **the version**: :func:`library_version` is recorded in every result and keys the render cache.

``tests/test_corruption_reference.py`` compares the library with the reference formulas on real
photos: the noise and digital families (and brightness, saturate) are bit-identical, impulse
noise matches in distribution (scikit-image draws it), and elastic_transform is the deliberate
departure, measured and documented in the README (the bethgelab displacement field, no affine
part: it moves pixels less than the reference).
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np

from .errors import DgbenchError

LIBRARY = "imagecorruptions-imaug"  # the PyPI distribution
MODULE = "imagecorruptions"  # its import name
INSTALL = f'pip install --no-deps "{LIBRARY}>=1.1.5,<1.2"'  # --no-deps: it requires opencv-python, we ship -headless
GROUPS = ("noise", "blur", "weather", "digital")
SEVERITIES = (1, 2, 3, 4, 5)
# The library's own names, as ImageNet-C's folders name them (15 benchmark + 4 held-out extras).
IMAGENET_C = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
MIN_SIDE = 32  # the library refuses smaller images
# The library functions that take a ``seed`` argument instead of drawing from numpy's global RNG.
_SEED_KW = ("impulse_noise", "glass_blur")
_rng_lock = threading.Lock()  # the library draws from numpy's global RNG: one render at a time per process


class CorruptionError(DgbenchError):
    """The corruption library is missing, or a corruption/severity it does not have was asked for."""


def _module() -> Any:
    try:
        import imagecorruptions
    except ImportError as exc:
        raise CorruptionError(
            f"the common corruptions need the {LIBRARY!r} package ({exc}); install it with:  {INSTALL}"
        ) from None
    return imagecorruptions


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    _module()
    try:
        return version(LIBRARY)
    except PackageNotFoundError:  # importable but installed some other way (e.g. a source checkout)
        raise CorruptionError(f"'imagecorruptions' imports but {LIBRARY!r} is not installed; install it with:  {INSTALL}") from None


def available() -> tuple[str, ...]:
    """Every corruption the installed library implements, in its order."""
    return tuple(_module().get_corruption_names("all"))


def check_params(params: dict[str, Any]) -> str | None:
    """What is wrong with a ``corruption`` shift's parameters, or None (values, not types)."""
    name, sev = params.get("corruption"), params.get("severity")
    if name not in IMAGENET_C + EXTRA:
        return f"corruption {name!r} is not one of {', '.join(IMAGENET_C + EXTRA)}"
    if sev not in SEVERITIES:
        return f"severity {sev!r} must be an integer 1..5"
    if params.get("group") not in GROUPS:
        return f"group {params.get('group')!r} must be one of {', '.join(GROUPS)}"
    if int(params.get("work_size", 0)) < MIN_SIDE:
        return f"work_size {params.get('work_size')!r} must be at least {MIN_SIDE} (the library's smallest image)"
    return None


def corruption_seed(sample_id: str, corruption: str, seed: int = 0) -> int:
    """The per-image seed: sha256 of ``seed|corruption|sample id``, first 4 bytes (numpy needs < 2**32)."""
    digest = hashlib.sha256(f"{int(seed)}|{corruption}|{sample_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def work_factor(h: int, w: int, work_size: int) -> int:
    return max(1, int(work_size) // min(h, w))


def corrupt(rgb: np.ndarray, corruption: str, severity: int, seed: int, work_size: int = 224) -> np.ndarray:
    """Corrupt one ``H x W x 3`` uint8 RGB image; returns uint8 RGB of the same shape.

    Deterministic in ``seed``: numpy's global RNG (which the library draws from) is seeded with it
    for the call and restored afterwards, and the two functions with their own generator
    (impulse_noise: scikit-image's; glass_blur: numba's) get it as their ``seed``.
    """
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CorruptionError(f"corrupt() takes an H x W x 3 uint8 image, got {rgb.dtype} {rgb.shape}")
    if severity not in SEVERITIES:
        raise CorruptionError(f"severity {severity!r} must be an integer 1..5")
    mod = _module()
    if corruption not in mod.corruption_dict:
        raise CorruptionError(f"{LIBRARY} {library_version()} has no corruption {corruption!r} (it has: {', '.join(available())})")
    h, w = rgb.shape[:2]
    f = work_factor(h, w, work_size)
    if min(h, w) * f < MIN_SIDE:
        raise CorruptionError(f"image {h}x{w} is below the library's {MIN_SIDE} px even at work_size {work_size}; raise work_size")
    kwargs = {"seed": int(seed)} if corruption in _SEED_KW else {}
    with _rng_lock:
        state = np.random.get_state()
        # OpenCV's own thread pool off for the call: once started (frost resizes a large texture),
        # it hangs data-loader workers forked later from this process. Rendering is parallel
        # across loader workers instead.
        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(0)
        np.random.seed(int(seed))
        try:
            img = cv2.resize(rgb, (w * f, h * f), interpolation=cv2.INTER_CUBIC) if f > 1 else rgb
            out = mod.corrupt(np.ascontiguousarray(img), severity=int(severity), corruption_name=corruption, **kwargs)
            out = np.array(out, dtype=np.uint8)  # a copy: the library may hand back a read-only view of a PIL image
            if out.shape != img.shape:  # the library keeps the shape; a future version that did not would be caught here
                raise CorruptionError(f"{LIBRARY} {corruption} returned {out.shape} for an image of {img.shape}")
            if f > 1:
                out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        finally:
            np.random.set_state(state)
            cv2.setNumThreads(cv_threads)
    return np.ascontiguousarray(out)

"""``--decode gpu``: JPEG decode (nvJPEG) and resize/crop on the evaluation device, opt-in.

The exact path (:func:`dgbench.data.imagenet.decode_crop`) decodes with PIL in the loader's worker
processes. When the CPU cannot feed the GPU, the workers can instead only *read* the files, and the
main process decodes the whole batch on the device with ``torchvision.io.decode_jpeg(device=...)``
(nvJPEG on CUDA; libjpeg on the CPU, which is how the path is tested without a GPU), then resizes
the shorter side with torchvision's antialiased bilinear tensor resize (the same output size rule
as ``Resize`` on a PIL image) and center-crops. Images of the same size are resized together.

Not bit-exact with PIL: the resize is float math where PIL's is fixed-point, and nvJPEG's IDCT
and chroma upsampling differ from libjpeg's. The README quotes the measured pixel differences on
photos; results carry :data:`DECODE_INFO` in their preprocessing, so their keys differ from the
exact path's and the two never mix in a table. Files that are not JPEG (PNG, ...) are decoded by
PIL in the worker and only resized on the device.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
import torch

from ..errors import CorruptImageError
from .base import Preprocess

DECODE_INFO = ("torchvision.io.decode_jpeg on the device (nvJPEG on CUDA) + antialiased bilinear tensor resize "
               "of the shorter side + center crop on the device (--decode gpu; not bit-exact with PIL)")
JPEG_MAGIC = b"\xff\xd8"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torchvision >= 0.29 warns on every call that its image codecs move to TorchCodec one day."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        yield


@dataclass
class Encoded:
    """What a worker hands over for one image: the file's bytes, or PIL's pixels when not a JPEG."""

    path: str
    data: torch.Tensor  # uint8: 1-D file bytes (kind "jpeg") or [3, H, W] pixels (kind "pixels")
    kind: str


def read_encoded(path: str | os.PathLike) -> Encoded:
    """Read one image for device decoding (runs in the loader's workers)."""
    import numpy as np

    # np.fromfile, not torchvision's read_file: its file-backed storage cannot be sent from a
    # loader worker to the main process (the file descriptor is gone by then)
    try:
        data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    except OSError as exc:
        raise CorruptImageError(f"{path}: cannot decode image (cannot read: {exc})") from None
    if bytes(data[:2].tolist()) == JPEG_MAGIC:
        return Encoded(str(path), data, "jpeg")
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    try:
        with Image.open(path) as im:
            return Encoded(str(path), pil_to_tensor(im.convert("RGB")), "pixels")
    except Exception as exc:
        raise CorruptImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class DeviceDecoder:
    """Decode, resize and crop a batch of :class:`Encoded` images on ``device``."""

    preprocess: Preprocess

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        return (3, self.preprocess.crop_size, self.preprocess.crop_size)

    def __call__(self, items: list[Encoded], device: torch.device) -> tuple[torch.Tensor, list[int], list[str]]:
        """``(uint8 crops [B', 3, c, c] on device, indices of the decoded items, errors of the others)``."""
        pixels, errors = self._decode(items, device)
        ok = [i for i, p in enumerate(pixels) if p is not None]
        out = torch.empty((len(ok), *self.crop_shape), dtype=torch.uint8, device=device)
        by_size: dict[tuple[int, int], list[int]] = {}
        for j, i in enumerate(ok):
            by_size.setdefault(tuple(pixels[i].shape[1:]), []).append(j)  # type: ignore[union-attr]
        for js in by_size.values():
            out[js] = self._resize_crop(torch.stack([pixels[ok[j]] for j in js]))  # type: ignore[misc]
        return out, ok, errors

    def _decode(self, items: list[Encoded], device: torch.device) -> tuple[list[torch.Tensor | None], list[str]]:
        pixels: list[torch.Tensor | None] = [None] * len(items)
        jpegs = [i for i, it in enumerate(items) if it.kind == "jpeg"]
        for i, it in enumerate(items):
            if it.kind == "pixels":
                pixels[i] = it.data.to(device, non_blocking=True)
        with _quiet():
            return self._decode_jpegs(items, jpegs, pixels, device)

    @staticmethod
    def _decode_jpegs(items: list[Encoded], jpegs: list[int], pixels: list[torch.Tensor | None],
                      device: torch.device) -> tuple[list[torch.Tensor | None], list[str]]:
        from torchvision.io import ImageReadMode, decode_jpeg

        errors: list[str] = []
        if not jpegs:
            return pixels, errors
        try:
            decoded = decode_jpeg([items[i].data for i in jpegs], mode=ImageReadMode.RGB, device=device)
            for i, img in zip(jpegs, decoded):
                pixels[i] = img
        except RuntimeError:  # one bad file fails the batch call: find it (them) one by one
            for i in jpegs:
                try:
                    pixels[i] = decode_jpeg(items[i].data, mode=ImageReadMode.RGB, device=device)
                except RuntimeError as exc:
                    errors.append(f"{items[i].path}: cannot decode image (decode_jpeg: {str(exc).splitlines()[0]})")
        return pixels, errors

    def _resize_crop(self, batch: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        interp = InterpolationMode(self.preprocess.interpolation)
        x = TF.resize(batch, self.preprocess.resize_size, interpolation=interp, antialias=True)
        return TF.center_crop(x, self.preprocess.crop_size)


def placeholder_crop(decoder: DeviceDecoder) -> torch.Tensor:
    """A shape-only stand-in for the clean crop that image-shift sources check against (never read)."""
    return torch.empty(decoder.crop_shape, dtype=torch.uint8, device="meta")

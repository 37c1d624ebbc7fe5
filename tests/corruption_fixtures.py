"""Shared helpers of the corruption tests: the shipped corruption shifts, a photo crop, a tiny dataset."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from dgbench.shifts import ShiftSpec


@functools.lru_cache(maxsize=1)
def corruption_shifts() -> dict[str, ShiftSpec]:
    """Every ``corruption`` shift of the shipped transforms, by name."""
    from dgbench.protocols import registry

    return {n: s for n, s in registry().shifts.items() if s.kind == "corruption"}


def photo(name: str = "astronaut", size: int = 224) -> np.ndarray:
    """A real photo bundled with scikit-image, shorter side resized to ``size`` and center-cropped."""
    import skimage.data
    from PIL import Image

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    h, w = img.shape[:2]
    f = size / min(h, w)
    # PIL, not OpenCV: cv2's thread pool started in the pytest process deadlocks the engine's loader
    # workers forked later (their init calls cv2.setNumThreads)
    img = np.asarray(Image.fromarray(img).resize((max(size, round(w * f)), max(size, round(h * f))), Image.BOX))
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


class TinyDataset(torch.utils.data.Dataset):
    """A few photo crops with stable sample ids and a fingerprint (what the style cache needs)."""

    name = "tiny-photos"
    num_classes = 2

    def __init__(self, names: tuple[str, ...] = ("astronaut", "coffee", "chelsea"), size: int = 224):
        self.names = names
        self.crops = [torch.from_numpy(photo(n, size)).permute(2, 0, 1).contiguous() for n in names]

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.crops[i], i % 2

    def sample_id(self, i: int) -> str:
        return self.names[i]

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(b"".join(c.numpy().tobytes() for c in self.crops)).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

"""Helpers the benchmarks share. They run as ``python benchmarks/NAME.py``, which puts this folder
on ``sys.path``; precision contexts come from dgbench itself (``dgbench.runtime.autocast``)."""
from __future__ import annotations

import torch


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work, so a wall-clock time covers it (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def authors_transforms(shift: str, mean, std):
    """The authors'-style evaluation's PIL pipeline for one appearance shift: ``Resize(256)``,
    ``CenterCrop(224)``, ``ToTensor``, the shift on ToTensor's 0..1 scale (unclipped; std x1.5
    after ``Normalize``), ``Normalize``."""
    from torchvision import transforms as T

    def add(value: float, channels: list[int]) -> T.Lambda:
        def fn(x: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            x[channels] += value / 255.0
            return x
        return T.Lambda(fn)

    pre = {"origin": [], "rgb+50": [add(50, [0, 1, 2])], "r+50": [add(50, [0])], "std-x1.5": []}
    post = {"std-x1.5": [T.Lambda(lambda x: x * 1.5)]}
    return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), *pre[shift], T.Normalize(mean, std),
                      *post.get(shift, [])])

"""Tiny ImageNet-layout trees and small models for the appearance tests (built in tmp_path)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dgbench.data.imagenet import synsets


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (80, 60)) -> None:
    rng = np.random.default_rng(seed)
    # smooth-ish content (a gradient plus noise) so resizing and styles do something visible
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3 + seed * 17) % 256, (yy * 4 + seed * 29) % 256, ((xx + yy) * 2) % 256], -1)
    arr = np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=92)


def folder_tree(root: Path, labels: list[int], size: tuple[int, int] = (80, 60)) -> Path:
    """``root/<synset>/ILSVRC2012_val_<i>.JPEG``, image i (1-based) of class ``labels[i-1]``."""
    for i, c in enumerate(labels, 1):
        write_jpeg(root / synsets()[c] / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i, size=size)
    return root


def small(name: str, size: int = 64, num_classes: int | None = None, randomize_norms: bool = True, seed: int = 0) -> nn.Module:
    """A registry model evaluated at ``size`` px (resize size + 8, center crop ``size``) with random
    weights and, optionally, random norm statistics (so a plain network is not scale-equivariant)."""
    import dgbench

    torch.manual_seed(seed)
    kwargs = {"num_classes": num_classes} if num_classes else {}
    m = dgbench.create_model(name, **kwargs)
    cfg = m.pretrained_cfg
    m.pretrained_cfg = dataclasses.replace(cfg, input_size=(3, size, size), crop_pct=size / (size + 8),
                                           num_classes=num_classes or cfg.num_classes)
    if randomize_norms:
        g = torch.Generator().manual_seed(seed + 1)
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                if mod.affine:
                    mod.weight.data = torch.rand(mod.weight.shape, generator=g) + 0.5
                    mod.bias.data = torch.rand(mod.bias.shape, generator=g) * 2 - 1
                if getattr(mod, "running_mean", None) is not None:
                    mod.running_mean.data = torch.rand(mod.running_mean.shape, generator=g) - 0.5
                    mod.running_var.data = torch.rand(mod.running_var.shape, generator=g) + 0.5
    return m.eval()


def env_isolated(monkeypatch, tmp_path: Path) -> None:
    """Results and caches inside tmp_path; no ImageNet from the environment."""
    monkeypatch.setenv("DGBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DGBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("DGBENCH_IMAGENET", raising=False)
    monkeypatch.setenv("DGBENCH_OFFLINE", "1")
    os.environ.pop("WORLD_SIZE", None)

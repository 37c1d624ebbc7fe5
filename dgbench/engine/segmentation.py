"""Segmentation inference: logits for an image (whole or sliding window, flip), one confusion matrix.

Inference modes (logits are always upsampled bilinearly to the label size before the argmax):

* ``whole`` (default): the whole image at ``scale`` x its stored resolution (1.0: Cityscapes
  2048x1024, GTA5 1914x1052; the dataset's ``base_size`` applies first if it has one);
* ``slide``: crops of ``crop_size`` (h, w) every ``stride`` (h, w) pixels over the scaled image
  (zero-padded, after normalization, where the image is smaller than a crop); the logits of
  overlapping windows are averaged.

``flip=True`` also runs the horizontally mirrored image and averages the two logit maps.

``save_dir`` writes three PNGs per image, in three sub-folders so the official tool (which
matches ``{city}_{seq}_{frame}*.png`` recursively and rejects several matches) can be pointed at
one of them:

    <dir>/labelIds/<name>_labelIds.png   labelIds: CITYSCAPES_RESULTS=<dir>/labelIds csEvalPixelLevelSemanticLabeling
    <dir>/trainIds/<name>_trainIds.png   trainIds 0..18
    <dir>/color/<name>_color.png         the Cityscapes palette, for looking at

Under ``torchrun`` each rank evaluates its shard (``runtime.shard``) and the confusion matrices
are summed, so the metrics are those of the whole set whatever the world size. ``per_image=True``
keeps each image's per-class counts as well (the mIoU intervals of ``dgbench table`` resample them). Used by the
cross-domain protocol and by the segmentation trainer alike.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.seg_base import CLASS_NAMES, IGNORE_INDEX, colorize, train_ids_to_label_ids
from ..errors import DgbenchError
from ..metrics.segmentation import ConfusionMatrix, SegMetrics
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from ..runtime import Runtime


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float normalized (the models' input)."""
    m = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    if size <= crop:
        return [0]
    n = int(math.ceil((size - crop) / stride)) + 1
    return sorted({min(i * stride, size - crop) for i in range(n)})


def _slide(model: torch.nn.Module, x: torch.Tensor, num_classes: int, crop: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = crop
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:  # zero after normalization is the mean colour
        x = F.pad(x, (0, pw, 0, ph))
    H, W = x.shape[-2:]
    out = torch.zeros(n, num_classes, H, W, device=x.device, dtype=torch.float32)
    count = torch.zeros(1, 1, H, W, device=x.device, dtype=torch.float32)
    for y0 in _window_starts(H, ch, stride[0]):
        for x0 in _window_starts(W, cw, stride[1]):
            out[:, :, y0 : y0 + ch, x0 : x0 + cw] += model(x[:, :, y0 : y0 + ch, x0 : x0 + cw]).float()
            count[:, :, y0 : y0 + ch, x0 : x0 + cw] += 1
    return (out / count)[:, :, :h, :w]


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    out_size: tuple[int, int],
    *,
    num_classes: int,
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = (769, 769),
    stride: tuple[int, int] = (513, 513),
    flip: bool = False,
) -> torch.Tensor:
    """Logits ``[N, C, *out_size]`` for normalized images ``x`` (see the module docstring)."""
    if scale != 1.0:
        size = (max(1, int(round(x.shape[-2] * scale))), max(1, int(round(x.shape[-1] * scale))))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def run(inp: torch.Tensor) -> torch.Tensor:
        if mode == "whole":
            return model(inp).float()
        if mode == "slide":
            return _slide(model, inp, num_classes, crop_size, stride)
        raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")

    logits = run(x)
    if flip:
        logits = (logits + run(x.flip(-1)).flip(-1)) / 2
    if tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return logits


def save_prediction(save_dir: Path, name: str, train_ids: np.ndarray) -> None:
    """Write the labelId, trainId and colour PNGs of one prediction."""
    for sub, arr in (
        ("labelIds", train_ids_to_label_ids(train_ids)),
        ("trainIds", train_ids.astype(np.uint8)),
        ("color", colorize(train_ids)),
    ):
        d = save_dir / sub
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(d / f"{name}_{sub}.png")


@torch.no_grad()
def _runtime(runtime: Runtime | None, device: str | torch.device, precision: str | None) -> Runtime:
    """The runtime passed, else one on ``device`` in ``precision``; both passed must agree."""
    rt = runtime or Runtime(torch.device(device), precision=precision or "fp32")
    if precision is not None and precision != rt.precision:
        raise DgbenchError(f"evaluate_segmentation: precision {precision!r}, but the runtime passed runs "
                           f"{rt.precision!r}; pass one of them")
    return rt


def evaluate_segmentation(
    model: torch.nn.Module,
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = (769, 769),
    stride: tuple[int, int] = (513, 513),
    flip: bool = False,
    precision: str | None = None,
    save_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
    runtime: Runtime | None = None,
    per_image: bool = False,
) -> tuple[SegMetrics, ConfusionMatrix]:
    """Evaluate ``model`` on a segmentation dataset (``ds[i] -> (uint8 img, trainIds, name)``).

    One image at a time (full-resolution images of different sizes do not batch). The forwards
    run in the runtime's precision (:mod:`dgbench.runtime`); without a ``runtime``, in
    ``precision`` (default fp32) on ``device``. With a distributed ``runtime`` each rank takes its
    shard and the confusion matrices are summed over the ranks.

    ``per_image=True`` also keeps every image's per-class counts, in dataset order (merged over
    the ranks): ``cm.per_image()`` (:class:`dgbench.metrics.outcomes.SegImageCounts`).
    """
    rt = _runtime(runtime, device, precision)
    device = rt.device
    model = model.to(device).eval()
    cfg = getattr(model, "pretrained_cfg", None)
    mean = getattr(cfg, "mean", IMAGENET_MEAN)
    std = getattr(cfg, "std", IMAGENET_STD)
    num_classes = getattr(dataset, "num_classes", 19)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    cm = ConfusionMatrix(num_classes, getattr(dataset, "ignore_index", IGNORE_INDEX), device=device,
                         images=len(dataset) if per_image else None)
    out_dir = Path(save_dir) if save_dir else None
    with rt.precision_flags(), rt.progress(n, "evaluating", progress) as advance:
        for i in rt.shard(n):
            img, label, name = dataset[i]
            x = normalize(img.unsqueeze(0).to(device), mean, std)
            with rt.autocast():
                logits = predict_logits(
                    model, x, tuple(label.shape[-2:]), num_classes=num_classes, mode=mode, scale=scale,
                    crop_size=crop_size, stride=stride, flip=flip,
                )
            pred = logits.argmax(1)[0]
            cm.update(pred, label.to(device), image=i)
            if out_dir is not None:
                save_prediction(out_dir, name, pred.to(torch.uint8).cpu().numpy())
            advance(rt.world_size)
    if rt.distributed:  # integer counts: the sum over shards is the whole set's matrix
        # (and, ranks holding disjoint images, the per-image rows' sum is their merge in order)
        for t in (cm.table(), cm.image_table()):
            if t is not None:
                t.copy_(rt.all_reduce(t).to(t.device))
    names = getattr(dataset, "class_names", CLASS_NAMES)
    return cm.compute(names), cm



"""One streaming pass of a model over a dataset: per-probe moments of the channel spatial means
(the loop behind the ``divergence`` protocol).

A pass decodes each image once and forwards it once per *branch* (the clean image, an affine
shift of it, or an image shift read from the style cache). Images may be split into *groups*
(the two class halves of a content pair); each (branch, group, probe) gets its own
:class:`~dgbench.metrics.divergence.Moments`. Only float64 moments are kept, never features.

Under torchrun each rank takes ``runtime.shard(n)`` of the images; afterwards every rank's moments
are exchanged (one all-reduce of a zero-padded ``[world, ...]`` tensor, i.e. a gather) and merged
in rank order, so every rank ends with the same moments, equal to a single process's up to float
rounding of the merge (~1e-15 relative).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..metrics.divergence import Moments, merge
from ..models.probes import Probe, SpatialMeans
from ..runtime import Runtime, autocast, default_workers
from ..shifts import AffineBatchShift, ShiftSpec

ImageSource = Callable[[Any, int, torch.Tensor], torch.Tensor]  # (dataset, index, crop) -> crop


@dataclass(frozen=True)
class Branch:
    """What the model sees of each image: an affine shift (``origin`` included) or an image shift."""

    spec: ShiftSpec
    source: ImageSource | None = None  # image shifts: where the rendered crop comes from


@dataclass
class PassConfig:
    batch_size: int = 64
    workers: int | None = None
    precision: str = "fp32"
    channels_last: bool = True
    progress: bool = True
    description: str = ""


class _View(Dataset):
    """Yields ``(clean crop, group, [image-shifted crops])`` for the shard's images."""

    def __init__(self, dataset: Any, indices: Sequence[int], groups: Sequence[int] | None,
                 sources: Sequence[ImageSource]):
        self.dataset, self.indices, self.groups, self.sources = dataset, list(indices), groups, list(sources)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
        idx = self.indices[i]
        crop, _ = self.dataset[idx]
        g = 0 if self.groups is None else int(self.groups[idx])
        return crop, g, [src(self.dataset, idx, crop) for src in self.sources]


def _collate(items: list[tuple[torch.Tensor, int, list[torch.Tensor]]]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    crops = torch.stack([it[0] for it in items])
    groups = torch.tensor([it[1] for it in items], dtype=torch.int64)
    styled = [torch.stack([it[2][j] for it in items]) for j in range(len(items[0][2]))]
    return crops, groups, styled


# moments[branch index][group][probe name]
PassMoments = list[list[dict[str, Moments]]]


def run_pass(model: nn.Module, dataset: Any, branches: Sequence[Branch], probes: list[Probe],
             runtime: Runtime, config: PassConfig, groups: Sequence[int] | None = None,
             num_groups: int = 1) -> PassMoments:
    """Stream ``dataset`` through ``model`` under each branch; return the all-reduced moments.

    ``groups``: a group id in ``0..num_groups-1`` per dataset index (None: one group).
    """
    cfg = model.pretrained_cfg  # type: ignore[attr-defined]
    device = runtime.device
    image = [b for b in branches if b.source is not None]
    view = _View(dataset, runtime.shard(len(dataset)), groups, [b.source for b in image])  # type: ignore[misc]
    workers = default_workers(device) if config.workers is None else config.workers
    loader = DataLoader(view, batch_size=config.batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, pin_memory=device.type == "cuda")
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.eval().to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    clean = AffineBatchShift(ShiftSpec("origin", "origin"), cfg.mean, cfg.std, device)
    fns = [AffineBatchShift(b.spec, cfg.mean, cfg.std, device) if b.source is None else None for b in branches]
    moments: PassMoments = [[{} for _ in range(num_groups)] for _ in branches]
    with SpatialMeans(probes) as hooks, runtime.progress(len(view), config.description, config.progress) as advance:
        for crops, grp, styled in loader:
            u = crops.to(device, non_blocking=True).float()
            it = iter(styled)
            for bi, fn in enumerate(fns):
                x = fn(u) if fn is not None else clean(next(it).to(device, non_blocking=True).float())
                with torch.inference_mode(), autocast(device, config.precision):
                    model(x.contiguous(memory_format=fmt))
                _update(moments[bi], hooks.take(), grp)
            advance(len(crops))
    return _all_reduce(moments, probes, runtime, num_groups)


def _update(per_group: list[dict[str, Moments]], means: dict[str, torch.Tensor], grp: torch.Tensor) -> None:
    for g in grp.unique().tolist():
        mask = grp == g
        for name, f in means.items():
            m = per_group[g].get(name)
            if m is None:
                m = per_group[g][name] = Moments.empty(f.shape[1])
            m.update(f[mask])


def _all_reduce(moments: PassMoments, probes: list[Probe], runtime: Runtime, num_groups: int) -> PassMoments:
    """Every rank's moments merged in rank order (a rank without images contributes nothing)."""
    # Channel counts come from the probes' outputs; a rank that saw no image learns them here.
    channels = {p.name: next((g[p.name].mean.numel() for b in moments for g in b if p.name in g), 0) for p in probes}
    if runtime.distributed:
        widths = torch.tensor([channels[p.name] for p in probes], dtype=torch.float64)
        widths = runtime.all_reduce(_one_hot_row(widths, runtime)).max(0).values
        channels = {p.name: int(w) for p, w in zip(probes, widths)}
    flat = torch.cat([_get(moments[b][g], p.name, channels[p.name]).as_tensor()
                      for b in range(len(moments)) for g in range(num_groups) for p in probes])
    rows = runtime.all_reduce(_one_hot_row(flat, runtime)) if runtime.distributed else flat[None]
    out: PassMoments = [[{} for _ in range(num_groups)] for _ in moments]
    for row in rows:  # rank order
        pos = 0
        for b in range(len(moments)):
            for g in range(num_groups):
                for p in probes:
                    width = 1 + 2 * channels[p.name]
                    part = Moments.from_tensor(row[pos:pos + width])
                    pos += width
                    prev = out[b][g].get(p.name)
                    out[b][g][p.name] = part if prev is None else merge(prev, part)
    return out


def _one_hot_row(t: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """``[world, len(t)]`` zeros with this rank's row set: summed over ranks, it is a gather."""
    rows = torch.zeros(runtime.world_size, t.numel(), dtype=torch.float64)
    rows[runtime.rank] = t
    return rows


def _get(d: dict[str, Moments], name: str, channels: int) -> Moments:
    return d.get(name) or Moments.empty(channels)

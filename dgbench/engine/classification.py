"""The batched evaluation loop behind ``dgbench run``: one decode per image, one forward per shift.

``evaluate(model, dataset, shifts)`` streams the dataset's uint8 crops through a DataLoader
(worker processes decode), and for every batch:

* converts it to float once, then for each *affine* shift computes the shifted normalized batch
  with one fused per-channel multiply-add (:class:`dgbench.shifts.AffineBatchShift`) and runs one
  forward pass;
* for each *image* shift (Monet, cv-stylize) the workers deliver the rendered crop of the same
  image (read from the cache, or computed on the fly) beside the clean one; it is normalized and
  forwarded the same way.

Top-1/top-5 are counted exactly as integers (:class:`dgbench.metrics.classification.TopKCounts`):
no padded duplicates, no dropped last batch. Under ``torchrun`` the dataset is sharded
deterministically (rank r takes indices r, r+W, r+2W, ...) and the integer counts are all-reduced,
so the result is identical whatever the world size; callers write results on rank 0 only.
With ``EngineConfig(outcomes=True)`` every image's top-1 class and top-k hits are kept too, and
merged over the ranks in dataset order (:class:`dgbench.metrics.outcomes.SampleOutcomes`).

Nothing here writes results: a Ctrl-C (KeyboardInterrupt) propagates out of the loop, the
DataLoader's workers are shut down, and the caller has nothing partial to store.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import CorruptImageError, DgbenchError
from ..data.device_decode import placeholder_crop
from ..metrics.classification import TopKCounts, topk_rows
from ..metrics.outcomes import SampleOutcomes
from ..runtime import Runtime, autocast, default_workers, dist_info, set_precision
from ..shifts import AffineBatchShift, ShiftSpec, normalize

# An image shift as the engine sees it: (dataset, index, clean uint8 crop) -> shifted uint8 crop.
# It runs inside DataLoader workers, so it must be picklable.
ImageShiftSource = Callable[[Any, int, torch.Tensor], torch.Tensor]


@dataclass
class EngineConfig:
    """How to run (recorded, but not part of a result's identity except ``precision``)."""

    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None  # None: a sensible default for the device
    precision: str = "fp32"
    channels_last: bool = True
    skip_corrupt: bool = False
    progress: bool = True
    description: str = ""
    decode: str = "pil"  # "gpu": the workers read files, the batch is decoded on the device
    compile: bool = False  # torch.compile the model (same results up to float rounding)
    outcomes: bool = False  # keep every image's top-1 class and top-k correctness (EvalResult.outcomes)


@dataclass
class EvalResult:
    """Integer top-k counts per shift, plus what the run cost."""

    counts: dict[str, TopKCounts]
    num_samples: int
    skipped_corrupt: int
    skipped_files: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    world_size: int = 1
    device: str = "cpu"
    outcomes: dict[str, SampleOutcomes] | None = None  # per shift, in dataset order (EngineConfig.outcomes)

    @property
    def images_per_s(self) -> float:
        """Images through the whole protocol (decode + every shift's forward) per second."""
        return self.num_samples / self.duration_s if self.duration_s > 0 else float("nan")


# ----------------------------------------------------------------------------- data loading
class _EvalView(Dataset):
    """Yields ``(clean crop, label, [image-shifted crops])`` or a skip marker for a corrupt image."""

    def __init__(self, dataset: Any, indices: Sequence[int], sources: Sequence[ImageShiftSource], skip_corrupt: bool,
                 encoded: bool = False):
        self.dataset, self.indices, self.sources, self.skip_corrupt = dataset, list(indices), list(sources), skip_corrupt
        # --decode gpu: items are the files' bytes; image-shift sources only check the crop's shape
        self.encoded = encoded
        self.placeholder = placeholder_crop(dataset.device_decoder()) if encoded else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        idx = self.indices[i]
        try:
            crop, label = self.dataset.encoded(idx) if self.encoded else self.dataset[idx]
        except CorruptImageError as exc:
            # Returned, not raised: an exception raised in a worker process reaches the user wrapped
            # in the worker's traceback. The loop raises it again, as one line, in the main process.
            return ("skip" if self.skip_corrupt else "corrupt", str(exc).split(": cannot decode")[0], str(exc))
        shape_of = self.placeholder if self.encoded else crop
        return ("ok", crop, int(label), [src(self.dataset, idx, shape_of) for src in self.sources], idx)


@dataclass
class _Batch:
    crops: torch.Tensor | None
    labels: torch.Tensor | None
    styled: list[torch.Tensor]
    skipped: list[str]
    corrupt: list[str] = field(default_factory=list)  # error messages of undecodable images
    encoded: list[Any] | None = None  # --decode gpu: the files, decoded on the device (crops is None)
    positions: torch.Tensor | None = None  # each image's index in the dataset (per-image outcomes)

    def __len__(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[0])

    def pin_memory(self) -> _Batch:
        """Called by the DataLoader's pin-memory thread: page-locked tensors copy asynchronously."""
        pin = (lambda t: t.pin_memory()) if torch.cuda.is_available() else (lambda t: t)
        return _Batch(None if self.crops is None else pin(self.crops), None if self.labels is None else pin(self.labels),
                      [pin(t) for t in self.styled], self.skipped, self.corrupt, self.encoded, self.positions)


def _collate(items: list[tuple[Any, ...]]) -> _Batch:
    ok = [it for it in items if it[0] == "ok"]
    skipped = [it[1] for it in items if it[0] == "skip"]
    corrupt = [it[2] for it in items if it[0] == "corrupt"]
    if not ok:
        return _Batch(None, None, [], skipped, corrupt)
    encoded = [it[1] for it in ok] if not isinstance(ok[0][1], torch.Tensor) else None
    crops = torch.stack([it[1] for it in ok]) if encoded is None else None
    labels = torch.tensor([it[2] for it in ok], dtype=torch.int64)
    styled = [torch.stack([it[3][j] for it in ok]) for j in range(len(ok[0][3]))]
    positions = torch.tensor([it[4] for it in ok], dtype=torch.int64)
    return _Batch(crops, labels, styled, skipped, corrupt, encoded, positions)


def _single_threaded_opencv() -> None:
    """One OpenCV thread, set in the parent *before* the loader forks its workers.

    The workers decode and render with OpenCV; its own thread pool would oversubscribe the cores.
    Setting it inside a forked worker is not safe: if the parent had already started OpenCV's pool,
    the child inherits that pool's locks and ``cv2.setNumThreads`` can hang it.
    """
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)


def make_loader(view: Dataset, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    if workers:
        _single_threaded_opencv()
    return DataLoader(
        view,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,  # every image counts, the last batch may be smaller
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )


# ----------------------------------------------------------------------------- the loop
def evaluate(
    model: nn.Module,
    dataset: Any,
    shifts: Sequence[ShiftSpec],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    sources: dict[str, ImageShiftSource] | None = None,
    config: EngineConfig | None = None,
    runtime: Runtime | None = None,
    ks: tuple[int, ...] = (1, 5),
) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` under every shift in one pass over the data.

    Args:
        model: a classifier; its ``pretrained_cfg`` gives mean/std unless passed.
        dataset: ``ds[i] -> (uint8 [3, H, W], label)`` (see :mod:`dgbench.data.base`).
        shifts: affine shifts are computed on the batch; image shifts need a source in ``sources``.
        sources: ``{shift name: fn(dataset, index, crop) -> uint8 crop}`` for the image shifts.
        config: batch size, workers, precision, channels_last, skip_corrupt, progress.
        runtime: device and ranks (default: ``config.device`` in the current process group).
    """
    cfg = config or EngineConfig()
    set_precision(cfg.precision)
    rt = runtime or _current_runtime(cfg.device)
    device = rt.device
    mean, std = _norm_stats(model, mean, std)
    sources = sources or {}
    affine = [s for s in shifts if s.is_affine]
    image = [s for s in shifts if not s.is_affine]
    encoded = _check_inputs(dataset, image, sources, cfg.decode)
    indices = rt.shard(len(dataset))
    view = _EvalView(dataset, indices, [sources[s.name] for s in image], cfg.skip_corrupt, encoded)
    decoder = dataset.device_decoder() if encoded else None
    workers = default_workers(device) if cfg.workers is None else cfg.workers
    loader = make_loader(view, cfg.batch_size, workers, device)

    model, forward, fmt = _prepared(model, device, cfg)
    shift_fns = [AffineBatchShift(s, mean, std, device) for s in affine]
    clean = AffineBatchShift(ShiftSpec("origin", "origin"), mean, std, device)
    # Counts stay on the device (int64 [n, correct@k...] per shift): no host sync per batch, so
    # the host reads the next batch while the device computes; one copy to the host at the end.
    acc = {s.name: torch.zeros(1 + len(ks), dtype=torch.int64, device=device) for s in shifts}
    kept = _OutcomeRecorder([s.name for s in shifts], len(dataset), ks, device) if cfg.outcomes else None

    def count(name: str, logits: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> None:
        acc[name][0] += y.shape[0]
        pred, rows = topk_rows(logits, y, ks)
        acc[name][1:] += rows.sum(dim=0)  # the same integers topk_hits gives
        if kept is not None:
            kept.add(name, pos, pred, rows)

    skipped: list[str] = []
    n_seen = 0
    start = time.perf_counter()
    desc = cfg.description or getattr(model, "dgbench_name", type(model).__name__)
    with _cudnn_autotune(device), rt.progress(len(indices), f"{desc} · {len(shifts)} shifts", cfg.progress) as advance:
        for batch in loader:
            if batch.corrupt:
                raise CorruptImageError(f"{batch.corrupt[0]}; pass --skip-corrupt to skip (and count) undecodable images")
            skipped += batch.skipped
            advance(len(batch.skipped))
            if not len(batch):
                continue
            u8, y, styled, pos = _on_device(batch, decoder, device, cfg.skip_corrupt, skipped)
            u = u8.float().contiguous(memory_format=fmt)
            with torch.inference_mode(), autocast(device, cfg.precision):
                for s, fn in zip(affine, shift_fns):
                    count(s.name, forward(fn(u).contiguous(memory_format=fmt)), y, pos)
                for s, st in zip(image, styled):
                    x = clean(st.to(device, non_blocking=True).float()).contiguous(memory_format=fmt)
                    count(s.name, forward(x), y, pos)
            n_seen += int(y.shape[0])
            advance(len(batch))

    counts, n_skipped, n_seen = _gather_counts(acc, [s.name for s in shifts], ks, rt, len(skipped), n_seen)
    outcomes = kept.merge(rt) if kept is not None else None
    duration = time.perf_counter() - start
    return EvalResult(counts, n_seen, n_skipped, skipped, duration, rt.world_size, str(device), outcomes)


def _norm_stats(model: nn.Module, mean: Sequence[float] | None,
                std: Sequence[float] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation: as passed, else the model's ``pretrained_cfg``, else ImageNet's."""
    pcfg = getattr(model, "pretrained_cfg", None)
    mean = tuple(mean if mean is not None else (pcfg.mean if pcfg else (0.485, 0.456, 0.406)))
    std = tuple(std if std is not None else (pcfg.std if pcfg else (0.229, 0.224, 0.225)))
    return mean, std


def _prepared(model: nn.Module, device: torch.device, cfg: EngineConfig) -> tuple[nn.Module, Any, torch.memory_format]:
    """The model in eval mode on ``device`` (channels_last if asked), its forward (compiled if
    asked) and the memory format its inputs take."""
    model = model.eval().to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, (_compiled(model) if cfg.compile else model), fmt


def _check_inputs(dataset: Any, image: Sequence[ShiftSpec], sources: dict[str, Any], decode: str) -> bool:
    """Refuse what cannot run, before any work; whether images are decoded on the device."""
    for s in image:
        if s.name not in sources:
            raise DgbenchError(f"shift {s.name!r} ({s.kind}) needs rendered images and none were provided")
    encoded = decode == "gpu"
    if encoded and not hasattr(dataset, "encoded"):
        raise DgbenchError(f"--decode gpu: dataset {getattr(dataset, 'name', '?')!r} has no image files to decode "
                           "on the device (ImageNet folders only); use --decode pil")
    if decode not in ("pil", "gpu"):
        raise DgbenchError(f"--decode {decode!r}: use pil (exact) or gpu")
    return encoded


def _on_device(batch: Any, decoder: Any, device: torch.device, skip_corrupt: bool,
               skipped: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """A batch's uint8 crops, labels, styled images and positions on the device (decoded there
    with ``--decode gpu``; images it cannot decode are dropped and named in ``skipped``)."""
    styled = batch.styled
    y = batch.labels.to(device, non_blocking=True)
    pos = batch.positions.to(device, non_blocking=True)
    if decoder is None:
        return batch.crops.to(device, non_blocking=True), y, styled, pos
    u8, keep, errors = decoder(batch.encoded, device)
    if errors:
        if not skip_corrupt:
            raise CorruptImageError(f"{errors[0]}; pass --skip-corrupt to skip (and count) undecodable images")
        skipped += [e.split(": cannot decode")[0] for e in errors]
        y, styled, pos = y[keep], [t[keep] for t in styled], pos[keep]
    return u8, y, styled, pos


def _gather_counts(acc: dict[str, torch.Tensor], names: Sequence[str], ks: tuple[int, ...], rt: Runtime,
                   n_skipped: int, n_seen: int) -> tuple[dict[str, TopKCounts], int, int]:
    """The device-side counts on the host, summed over ranks: (counts per shift, skipped, seen)."""
    width = 1 + len(ks)
    host = torch.stack([acc[n] for n in names]).cpu() if names else torch.zeros(0, width, dtype=torch.int64)
    counts = {n: TopKCounts.from_tensor(host[i], ks) for i, n in enumerate(names)}
    if rt.distributed:
        # One int64 vector: [n, correct@k...] per shift, then the skipped and seen counts; summed over ranks.
        flat = torch.cat([counts[n].as_tensor() for n in names] + [torch.tensor([n_skipped, n_seen])])
        flat = rt.all_reduce(flat)
        for i, n in enumerate(names):
            counts[n] = TopKCounts.from_tensor(flat[i * width:(i + 1) * width], ks)
        n_skipped, n_seen = int(flat[-2]), int(flat[-1])
    return counts, n_skipped, n_seen


class _OutcomeRecorder:
    """Every image's top-1 class and top-k hits per shift, kept on the device until the end.

    ``merge`` lays them out in dataset order in one int32 table ``[shift, 2 + len(ks), N]``
    (evaluated flag, predicted class + 1, hit@k...), zero where this rank saw nothing. Ranks hold
    disjoint images, so the all-reduce's sum is the merge of the shards, in sample order.
    """

    def __init__(self, names: list[str], n: int, ks: tuple[int, ...], device: torch.device):
        self.names, self.n, self.ks, self.device = names, n, ks, device
        self.parts: dict[str, list[tuple[torch.Tensor, ...]]] = {name: [] for name in names}

    def add(self, name: str, pos: torch.Tensor, pred: torch.Tensor, rows: torch.Tensor) -> None:
        self.parts[name].append((pos, pred, rows))

    def merge(self, rt: Runtime) -> dict[str, SampleOutcomes]:
        table = torch.zeros(len(self.names), 2 + len(self.ks), self.n, dtype=torch.int32, device=self.device)
        for i, name in enumerate(self.names):
            if not self.parts[name]:
                continue
            pos, pred, rows = (torch.cat(t) for t in zip(*self.parts[name]))
            table[i, 0, pos] = 1
            table[i, 1, pos] = pred.to(torch.int32) + 1
            table[i, 2:, pos] = rows.T.to(torch.int32)
        host = rt.all_reduce(table).numpy()
        return {name: SampleOutcomes(evaluated=host[i, 0] > 0, pred=host[i, 1].astype(np.int64) - 1,
                                     correct={k: host[i, 2 + j] > 0 for j, k in enumerate(self.ks)})
                for i, name in enumerate(self.names)}


@contextlib.contextmanager
def _cudnn_autotune(device: torch.device) -> Any:
    """cuDNN picks the fastest convolution algorithms for the (fixed) batch shape; restored after."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = old or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def _compiled(model: nn.Module) -> Callable[..., torch.Tensor]:
    """``torch.compile(model)`` (``--compile``); shapes vary only in the last batch (dynamic=False
    recompiles once for it rather than tracing symbolic shapes).

    Compilation is lazy: it happens in the first call (and a recompile in the last batch's), so
    that is where a failure such as a missing C++ compiler surfaces; it becomes one line there.
    Errors of the model itself are not dynamo's and pass through unchanged.
    """
    from torch._dynamo.exc import TorchDynamoException

    def fail(exc: Exception) -> DgbenchError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return DgbenchError(f"--compile: torch.compile failed ({type(exc).__name__}: {first}); run without --compile")

    try:
        compiled = torch.compile(model, dynamic=False)
    except Exception as exc:  # e.g. an unsupported Python or platform
        raise fail(exc) from None

    def forward(x: torch.Tensor) -> torch.Tensor:
        try:
            return compiled(x)
        except TorchDynamoException as exc:
            raise fail(exc) from None

    return forward


def _current_runtime(device: str) -> Runtime:
    """The runtime of a caller that passed none: its device, in whatever process group is open."""
    from ..runtime import resolve_device

    rank, world = dist_info()
    return Runtime(resolve_device(device), rank, world)


def normalize_batch(u: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The clean model input for a uint8 batch, with the model's mean/std (convenience)."""
    cfg = model.pretrained_cfg  # type: ignore[attr-defined]
    return normalize(u, cfg.mean, cfg.std)

"""Training DeepLab models on Cityscapes or GTA5 with the paper's recipe (Section 4.2).

Defaults are the paper's: SGD (momentum 0.9, weight decay 1e-4), poly learning rate (base 0.01,
power 0.9, per iteration), batch 16, 80 epochs, random scale / aspect ratio / mirror and random
crops from full-resolution Cityscapes and from GTA5 resized to 1024x563, a seeded quarter of
GTA5's train split. Numbers the paper leaves out (crop size, scale and aspect ranges) are
:class:`~dgbench.data.seg_transforms.SegAugment`'s documented defaults. Every number is a
parameter.

An epoch is ``len(train set) // batch_size`` iterations (the last partial batch is dropped);
the poly schedule runs over ``epochs`` of them. ``stop_after`` ends a run early without changing
the schedule (a time-limited job); running again with ``resume=True`` continues it.

Checkpoints (``<out_dir>/checkpoint.pth``, written atomically every ``checkpoint_every``
iterations, at each epoch end and at the end) hold the model, optimizer, AMP scaler, iteration,
the RNG states and the run's configuration; the data order and augmentation are functions of
(seed, epoch, index), so a resumed run trains on exactly the batches the interrupted one would
have. At the end ``<out_dir>/model.pth`` holds the weights alone (loadable with
``create_model(name, pretrained=path, **model_kwargs)``) and ``model.json`` its name and kwargs.

Fine-tuning (:mod:`dgbench.protocols.finetune`): ``init_weights`` starts from a whole model's
weights, ``indices`` trains on a subset of the split and ``iterations`` fixes the schedule's
length; all three are in the checkpoint's configuration, so a run never resumes another's.

Multi-GPU: launch with ``torchrun --nproc_per_node N``; each rank takes ``batch_size / N``
images of every global batch (DDP), SyncBN on by default across CUDA ranks. Precision is the
runtime's (:mod:`dgbench.runtime`): by default fp16 autocast + loss scaling on CUDA, fp32
elsewhere; ``precision`` chooses (fp32, tf32, bf16, fp16) and the checkpoint's config records it.

Configuration: :class:`SegTrainConfig` (what defines the weights) inside a :class:`SegTrainJob`
(where and how it runs); :func:`train_segmentation` builds the job from keywords,
:func:`run_training` runs a built one.
"""
from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..builtin.recipes import SCENE_MODELS as BUILTIN_SCENE_MODELS
from ..builtin.recipes import SCENE_RECIPE as BUILTIN_SCENE_RECIPE
from ..data.base import indices_sha256 as _indices_sha256
from ..data.seg_base import IGNORE_INDEX, QuirkPolicy
from ..data.seg_transforms import AugmentedSegmentation, SegAugment
from ..errors import CheckpointError, DgbenchError
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD, create_model, model_info, resolve_name
from ..models.weights import load_state_dict_strict, sha256_file
from ..runtime import Runtime, resolve_device
from .checkpointing import atomic_save, load_train_checkpoint, rng_state, set_rng_state

CHECKPOINT = "checkpoint.pth"
WEIGHTS = "model.pth"


@dataclass
class SegTrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""

    dataset: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 19
    split: str = "train"
    epochs: int = 80
    batch_size: int = 16
    base_lr: float = 0.01
    lr_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    head_lr_mult: float = 1.0
    crop_size: tuple[int, int] = (713, 713)
    scale_range: tuple[float, float] = (0.5, 2.0)
    aspect_range: tuple[float, float] = (0.8, 1.25)
    mirror: bool = True
    gta5_size: tuple[int, int] = (1024, 563)
    gta5_fraction: float = 0.25
    subset_seed: int = 0
    seed: int = 0
    # Fine-tuning (dgbench.protocols.finetune): a fixed schedule length instead of ``epochs``,
    # the whole model's starting weights, and a subset of the training split (by index).
    iterations: int | None = None
    init_weights_sha256: str | None = None
    subset_size: int | None = None
    subset_sha256: str | None = None
    # The precision the run trained in (dgbench.runtime), set when it starts.
    precision: str | None = None


@dataclass
class SegTrainResult:
    out_dir: Path
    checkpoint: Path
    weights: Path | None
    iteration: int
    total_iterations: int
    losses: list[float]
    resumed_from: int = 0


def segmentation_model_name(name: str, dataset: str | None = None) -> str:
    """``ibn_a`` / ``resnet50_ibn_a`` / ``deeplab_ibn_a`` -> ``deeplab_resnet50_ibn_a``.

    On a built-in digit-scenes domain a zoo alias or bare variant (``ibn_a``, ``baseline``) means
    the small scene model of that variant (``deeplab_small_resnet_ibn_a``).
    """
    from ..builtin.domains import SCENE_DOMAINS
    from ..builtin.names import builtin_model_name

    if dataset in SCENE_DOMAINS and not name.startswith("deeplab_"):  # a deeplab_ name is taken as it is
        return builtin_model_name(name, dataset)  # type: ignore[return-value]
    try:
        canon = resolve_name(name)
    except Exception:
        canon = None
    if canon and model_info(canon).task == "segmentation":
        return canon
    if canon:
        return resolve_name(f"deeplab_{canon}")
    return resolve_name(f"deeplab_{name}")


def build_train_dataset(cfg: SegTrainConfig, root: str | os.PathLike | None, policy: QuirkPolicy | None, split_file: str | None) -> Dataset:
    """The training split, built through the dataset registry as evaluation builds its test sets."""
    from ..builtin.domains import is_builtin
    from ..data.base import build_dataset, list_datasets
    from ..errors import UnknownNameError

    if cfg.dataset not in list_datasets(task="segmentation"):
        raise UnknownNameError("segmentation training dataset", cfg.dataset, list_datasets(task="segmentation"))
    if is_builtin(cfg.dataset):  # generated in memory: no root, no quirks
        return build_dataset(cfg.dataset, split=cfg.split)
    options: dict[str, Any] = {"policy": policy}
    if cfg.dataset == "gta5":
        options.update(split_file=split_file, fraction=cfg.gta5_fraction, subset_seed=cfg.subset_seed,
                       base_size=tuple(cfg.gta5_size))
    return build_dataset(cfg.dataset, root, split=cfg.split, **options)


class EpochSampler(Sampler[int]):
    """A permutation per epoch from (seed, epoch), this rank's share, starting at ``start`` samples."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.epoch, self.start, self.rank, self.world = n, seed, epoch, start, rank, world

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._order()[self.start :]
        return iter(order[self.rank :: self.world])

    def __len__(self) -> int:
        return len(range(self.rank, self.n - self.start, self.world))


def poly_lr(base: float, it: int, total: int, power: float) -> float:
    return base * (1 - it / total) ** power if it < total else 0.0


def _jsonable(cfg: SegTrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


def _check_compatible(ckpt: dict[str, Any], cfg: SegTrainConfig, path: Path) -> None:
    old = ckpt.get("config", {})
    if old.get("num_classes") != cfg.num_classes:
        raise CheckpointError(
            f"checkpoint {path} was trained for {old.get('num_classes')} classes, this run has {cfg.num_classes}; "
            "use another --out directory or the matching number of classes"
        )
    for key in ("model", "dataset", "batch_size", "epochs", "iterations", "init_weights_sha256", "subset_sha256",
                "precision"):
        if key == "precision" and old.get(key) is None:  # a checkpoint from before precision was recorded
            continue
        if old.get(key) != getattr(cfg, key):
            raise CheckpointError(
                f"checkpoint {path} is from a run with {key}={old.get(key)!r}, this run has {key}={getattr(cfg, key)!r}; "
                "resume with the same settings or use another --out directory"
            )


@dataclass
class SegTrainJob:
    """One training run: its :class:`SegTrainConfig` (what defines the weights, stored in its
    checkpoints) and how and where it runs. :meth:`build` makes one from settings by name."""

    config: SegTrainConfig
    root: str | os.PathLike | None = None
    out_dir: str | os.PathLike = "runs/segmentation"
    resume: bool | str | os.PathLike = True
    gta5_split_file: str | None = None
    gta5_mismatch: str = "error"
    gta5_unreadable: str = "error"
    quirk_policy: QuirkPolicy | None = None  # a full policy instead of the two strings above
    pretrained_backbone: bool | str = True
    init_weights: str | os.PathLike | None = None
    indices: list[int] | None = None
    stop_after: int | None = None
    checkpoint_every: int | None = None
    device: str | None = None
    # None: fp16 autocast + loss scaling on CUDA (the paper's mixed precision), fp32 elsewhere.
    precision: str | None = None
    sync_bn: bool | None = None
    num_workers: int = 4
    progress: bool = True

    @classmethod
    def build(cls, dataset: str = "cityscapes", model: str = "deeplab_resnet50_ibn_a", **settings: Any) -> SegTrainJob:
        """A job from :class:`SegTrainConfig`'s fields and the job's own, by name (defaults: theirs).

        ``model`` may be an alias (see :func:`segmentation_model_name`); ``num_classes`` defaults
        to the dataset's; ``amp=False`` is the older spelling of ``precision="fp32"``.
        """
        if settings.pop("amp", None) is False and settings.get("precision") is None:
            settings["precision"] = "fp32"
        config_names = {f.name for f in fields(SegTrainConfig)} - _SET_BY_BUILD
        job_names = {f.name for f in fields(cls)} - {"config"}
        unknown = sorted(set(settings) - config_names - job_names)
        if unknown:
            raise TypeError(f"train_segmentation() got unexpected keyword argument(s): {', '.join(unknown)}")
        given = {k: v for k, v in settings.items() if k in config_names}
        given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()}
        given["model_kwargs"] = dict(given.get("model_kwargs") or {})
        if given.get("num_classes") is None:
            given["num_classes"] = _default_classes(dataset)
        cfg = SegTrainConfig(dataset=dataset, model=segmentation_model_name(model, dataset), **given)
        job = cls(cfg, **{k: v for k, v in settings.items() if k in job_names})
        if job.init_weights is not None:
            cfg.init_weights_sha256 = _file_sha256(Path(job.init_weights))
        if job.indices is not None:
            job.indices = [int(i) for i in job.indices]
            cfg.subset_size, cfg.subset_sha256 = len(job.indices), _indices_sha256(job.indices)
        return job

    def precision_on(self, device: torch.device) -> str:
        return self.precision or ("fp16" if device.type == "cuda" else "fp32")

    def policy(self) -> QuirkPolicy:
        return self.quirk_policy or QuirkPolicy(size_mismatch=self.gta5_mismatch, unreadable=self.gta5_unreadable)

    def train_dataset(self) -> Dataset:
        """The whole training split as the trainer indexes it (``indices`` refer to it)."""
        return build_train_dataset(self.config, self.root, self.policy(), self.gta5_split_file)


# Config fields that build() fills in itself (from dataset/model, init_weights and indices).
_SET_BY_BUILD = {"dataset", "model", "init_weights_sha256", "subset_size", "subset_sha256", "precision"}


def _default_classes(dataset: str) -> int:
    from ..builtin.digit_scenes import NUM_CLASSES as SCENE_CLASSES, SCENE_DOMAINS

    return SCENE_CLASSES if dataset in SCENE_DOMAINS else 19


def train_segmentation(dataset: str = "cityscapes", model: str = "deeplab_resnet50_ibn_a", **settings: Any) -> SegTrainResult:
    """Train a segmentation model; see the module docstring for the recipe and the checkpoints.

    ``settings`` are :class:`SegTrainConfig`'s fields (the recipe: ``epochs``, ``batch_size``,
    ``base_lr``, ``crop_size``, ``seed``, ``iterations``...) and :class:`SegTrainJob`'s (where and
    how it runs), by name; :func:`run_training` takes a built job. Among them:

    Args:
        dataset: ``"cityscapes"`` or ``"gta5"`` (root from ``root`` or the env var), or a built-in
            digit-scenes domain (``"digit-scenes"``, ``"typeset-digit-scenes"``).
        model: a segmentation model name or a backbone alias (``ibn_a`` -> ``deeplab_resnet50_ibn_a``).
        num_classes: default: the dataset's (19 for Cityscapes/GTA5, 11 for digit scenes).
        model_kwargs: constructor knobs (``output_stride``, ``head``, ResNet knobs...).
        pretrained_backbone: ImageNet weights for the backbone (True: the zoo's; a path; False).
        resume: True continues ``<out_dir>/checkpoint.pth`` if present; a path resumes that file;
            False starts over (an existing checkpoint is overwritten).
        gta5_mismatch: policy for label maps whose size differs from their image: ``error``
            (default, lists them), ``resize-label`` or ``skip`` (see :mod:`dgbench.data.gta5`).
        gta5_unreadable: ``error`` or ``skip`` for unreadable files.
        quirk_policy: a full :class:`QuirkPolicy` instead of the two strings above.
        stop_after: stop at this iteration (the schedule still spans ``epochs``).
        device: ``auto`` (default): the local rank's GPU if available, else ``cpu``; ``cuda`` is
            the local rank's GPU (see :mod:`dgbench.runtime`).
        precision: ``fp32``, ``tf32`` (CUDA), ``bf16`` or ``fp16`` (autocast; fp16 with loss
            scaling); default fp16 on CUDA, fp32 elsewhere. Recorded in the checkpoint's config.
        sync_bn: SyncBatchNorm across ranks; default (None): on under torchrun with CUDA.
        iterations: the schedule's length in iterations (poly decay over them); default
            ``epochs`` x iterations per epoch.
        init_weights: fine-tuning: a whole model's weights (``model.pth``) to start from, loaded
            strictly (``pretrained_backbone`` is then ignored); its sha256 is in the config.
        indices: train on these images of the split only (fine-tuning on a fraction); the
            subset's size and sha256 are in the config.
    """
    return run_training(SegTrainJob.build(dataset, model, **settings))


def run_training(job: SegTrainJob, runtime: Runtime | None = None) -> SegTrainResult:
    """Run ``job`` on ``runtime`` (a protocol's), or on a runtime started for the job's device and precision."""
    if runtime is None:
        device = resolve_device(job.device or "auto")
        with Runtime.start(device, job.precision_on(device)) as rt:
            return _train(rt, job)
    if job.precision is not None and job.precision != runtime.precision:
        raise DgbenchError(f"training precision {job.precision!r}, but the runtime passed runs {runtime.precision!r}")
    with runtime.precision_flags():
        return _train(runtime, job)


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint to fine-tune from")
    return sha256_file(path)  # streamed: a checkpoint can be large


def _load_init_state(path: Path) -> dict[str, Any]:
    state = load_train_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def read_init_weights(path: Path) -> tuple[dict[str, Any], str]:
    """A fine-tune's starting weights (a state dict, or a training checkpoint's model) and their sha256."""
    sha = _file_sha256(path)
    return _load_init_state(path), sha


class _Subset(Dataset):
    """Images ``indices`` of a training dataset, with its ``load`` (what the augmentation reads)."""

    def __init__(self, base: Any, indices: Sequence[int]) -> None:
        bad = [i for i in indices if not 0 <= i < len(base)]
        if bad:
            raise ValueError(f"subset indices {bad[:5]} outside the {len(base)} training images")
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Any:
        return self.base.load(self.indices[index])


def _resume_from(job: SegTrainJob, ckpt_path: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The checkpoint a run continues (checked against its config), and where it was read."""
    resume = job.resume
    path = Path(resume) if isinstance(resume, (str, os.PathLike)) else (ckpt_path if resume else None)
    if path is None:
        return None, None
    if path.is_file():
        ckpt = load_train_checkpoint(path)
        _check_compatible(ckpt, job.config, path)
        return ckpt, path
    if not isinstance(resume, bool):
        raise CheckpointError(f"checkpoint {path} to resume from does not exist")
    return None, path


def _train_set(job: SegTrainJob) -> AugmentedSegmentation:
    base = job.train_dataset()
    if job.indices is not None:
        base = _Subset(base, job.indices)
    cfg = job.config
    return AugmentedSegmentation(base, SegAugment(cfg.crop_size, cfg.scale_range, cfg.aspect_range, cfg.mirror), cfg.seed)


def _network(job: SegTrainJob, rt: Runtime, resuming: bool) -> nn.Module:
    """The model on the runtime's device: from the backbone's weights, the fine-tune's start, or
    (resuming) to be overwritten by the checkpoint's."""
    cfg = job.config
    init = job.init_weights is not None
    net = create_model(cfg.model, num_classes=cfg.num_classes,
                       pretrained_backbone=job.pretrained_backbone if not resuming and not init else False,
                       **cfg.model_kwargs)
    if init and not resuming:
        load_state_dict_strict(net, _load_init_state(Path(job.init_weights)),  # type: ignore[arg-type]
                               f"to fine-tune from (sha256 {cfg.init_weights_sha256})", new_head_ok=False)
    # The paper's batch of 16 is normalized as one batch: SyncBN by default across CUDA ranks, so a
    # launch of 8 GPUs x 2 images gives every BN the statistics of 16 crops, not of 2.
    sync_bn = job.sync_bn if job.sync_bn is not None else rt.distributed and rt.device.type == "cuda"
    if sync_bn and rt.distributed:
        if rt.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        else:  # torch's SyncBatchNorm runs on GPUs only; say so instead of failing in DDP's init
            import warnings

            warnings.warn("sync_bn needs CUDA; training with per-process BatchNorm on CPU")
    return net.to(rt.device)


def _train(rt: Runtime, job: SegTrainJob) -> SegTrainResult:
    """The training of :func:`run_training` on a started runtime (device, ranks, precision)."""
    cfg = job.config
    if cfg.batch_size % rt.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {rt.world_size} processes")
    cfg.precision = rt.precision
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_ckpt, resume_path = _resume_from(job, out / CHECKPOINT)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    train_set = _train_set(job)
    iters_per_epoch = len(train_set) // cfg.batch_size
    if iters_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images are fewer than one batch of {cfg.batch_size}")
    net = _network(job, rt, resuming=start_ckpt is not None)
    groups = net.param_groups(cfg.base_lr, cfg.head_lr_mult) if hasattr(net, "param_groups") else [
        {"params": list(net.parameters()), "lr": cfg.base_lr, "lr_mult": 1.0}
    ]
    opt = torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    run = _Training(rt, job, net, opt, rt.grad_scaler(), train_set, iters_per_epoch, out)
    if start_ckpt is not None:
        run.restore(start_ckpt, resume_path)  # type: ignore[arg-type]
    resumed_from = run.it
    run.fit()
    weights: Path | None = None
    if run.it >= run.total and rt.is_main:
        weights = out / WEIGHTS
        atomic_save(net.state_dict(), weights)
        (out / "model.json").write_text(json.dumps({"model": cfg.model, "model_kwargs": cfg.model_kwargs, "num_classes": cfg.num_classes, "config": _jsonable(cfg)}, indent=2))
    return SegTrainResult(out, out / CHECKPOINT, weights, run.it, run.total, run.losses, resumed_from)


class _Training:
    """The iterations of one run: poly schedule, (scaled) steps, checkpoints, progress."""

    def __init__(self, rt: Runtime, job: SegTrainJob, net: nn.Module, opt: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, train_set: AugmentedSegmentation, iters_per_epoch: int, out: Path) -> None:
        cfg = job.config
        self.rt, self.job, self.net, self.opt, self.scaler = rt, job, net, opt, scaler
        self.train_set, self.iters_per_epoch, self.ckpt_path = train_set, iters_per_epoch, out / CHECKPOINT
        self.total = cfg.iterations if cfg.iterations is not None else cfg.epochs * iters_per_epoch
        self.stop = min(self.total, job.stop_after) if job.stop_after is not None else self.total
        self.it = 0
        self.losses: list[float] = []
        # Normalize as the model's configuration says (ImageNet statistics for the ResNet-50 DeepLabs).
        cfg_in = getattr(net, "pretrained_cfg", None)
        self.mean = torch.tensor(getattr(cfg_in, "mean", IMAGENET_MEAN), device=rt.device).view(1, 3, 1, 1)
        self.std = torch.tensor(getattr(cfg_in, "std", IMAGENET_STD), device=rt.device).view(1, 3, 1, 1)

    def restore(self, ckpt: dict[str, Any], path: Path) -> None:
        load_state_dict_strict(self.net, ckpt["model"], str(path), new_head_ok=False)
        self.opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.it = int(ckpt["iteration"])
        set_rng_state(ckpt["rng"])

    def save(self, iteration: int) -> None:
        if not self.rt.is_main:
            return
        atomic_save({"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                      "scaler": self.scaler.state_dict(), "iteration": iteration, "total_iterations": self.total,
                      "rng": rng_state(), "config": _jsonable(self.job.config)}, self.ckpt_path)

    def fit(self) -> None:
        """Iterate from ``self.it`` to the stop, checkpointing every ``checkpoint_every`` and per epoch."""
        rt, job = self.rt, self.job
        ddp_net: nn.Module = nn.parallel.DistributedDataParallel(
            self.net, device_ids=[rt.device.index] if rt.device.type == "cuda" else None) if rt.distributed else self.net
        bar = _progress_bar(job.progress and rt.is_main, f"train {job.config.model} on {job.config.dataset}", self.stop, self.it)
        ddp_net.train()
        try:
            while self.it < self.stop:
                epoch = self.it // self.iters_per_epoch
                for images, labels in self._loader(epoch):
                    if self.it >= self.stop or self.it // self.iters_per_epoch != epoch:
                        break
                    lv, lr_now = self._step(ddp_net, images, labels)
                    if bar is not None:
                        bar.update(bar.task_ids[0], completed=self.it, info=f"loss {lv:.4f} lr {lr_now:.2e}")
                    every = job.checkpoint_every
                    if (every and self.it % every == 0) or self.it % self.iters_per_epoch == 0:
                        self.save(self.it)
            self.save(self.it)
        finally:
            if bar is not None:
                bar.stop()

    def _loader(self, epoch: int) -> DataLoader:
        cfg, rt = self.job.config, self.rt
        offset = self.it - epoch * self.iters_per_epoch
        self.train_set.set_epoch(epoch)
        sampler = EpochSampler(len(self.train_set), cfg.seed, epoch, start=offset * cfg.batch_size, rank=rt.rank,
                               world=rt.world_size)
        return DataLoader(self.train_set, batch_size=cfg.batch_size // rt.world_size, sampler=sampler,
                          num_workers=self.job.num_workers, drop_last=True, pin_memory=rt.device.type == "cuda")

    def _step(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """One SGD step in the runtime's precision; returns the loss and the learning rate."""
        cfg, dev = self.job.config, self.rt.device
        lr_now = poly_lr(cfg.base_lr, self.it, self.total, cfg.lr_power)
        for g in self.opt.param_groups:
            g["lr"] = lr_now * g.get("lr_mult", 1.0)
        x = (images.to(dev, non_blocking=True).float() / 255.0 - self.mean) / self.std
        y = labels.to(dev, non_blocking=True)
        with self.rt.autocast():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.it += 1
        lv = float(loss.detach())
        self.losses.append(lv)
        if not math.isfinite(lv):
            self.save(self.it - 1)
            raise FloatingPointError(f"loss is {lv} at iteration {self.it}; last good checkpoint in {self.ckpt_path}")
        return lv, lr_now


def _progress_bar(enabled: bool, description: str, total: int, completed: int) -> Any:
    """A started rich progress bar with one task (``info``: the loss), or None."""
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    bar.add_task(description, total=total, completed=completed, info="")
    bar.start()
    return bar


# ---------------------------------------------------------------------------------------------
# The shipped checkpoints of the built-in digit-scenes pair.

# The models and the recipe (BUILTIN_SCENE_MODELS, BUILTIN_SCENE_RECIPE) are dgbench.builtin.recipes'.


def train_builtin_scene_models(
    models: tuple[str, ...] = BUILTIN_SCENE_MODELS,
    domains: tuple[str, ...] | None = None,
    *,
    work_dir: str | os.PathLike = "runs/digit-scenes",
    write_assets: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train the digit-scene models with :data:`BUILTIN_SCENE_RECIPE`; return manifest entries.

    ``write_assets=True`` copies the weights to ``dgbench/assets/checkpoints/digit-scenes/`` and
    merges the entries into its ``manifest.json`` (file, sha256, recipe, backbone init, and the
    mIoU / pixel accuracy on both test sets).
    """
    from ..config import asset_path
    from ..builtin.checkpoints import checkpoint_file
    from ..builtin.domains import SCENE_DOMAINS
    from ..data.base import build_dataset

    domains = domains or tuple(SCENE_DOMAINS)
    test_sets = {d: build_dataset(d, split="test") for d in SCENE_DOMAINS}
    entries = []
    for model in models:
        backbone = model.removeprefix("deeplab_")
        for domain in domains:
            init = asset_path(checkpoint_file(backbone, SCENE_DOMAINS[domain]))
            if not init.is_file():
                raise CheckpointError(f"{init} (the digits classifier the scene model starts from) is missing")
            r = train_segmentation(
                domain, model, out_dir=Path(work_dir) / f"{model}-{domain}", pretrained_backbone=str(init),
                resume=False, num_workers=0, progress=progress, **BUILTIN_SCENE_RECIPE,
            )
            entry = _scene_entry(model, domain, r, init, test_sets)
            entries.append(entry)
            if write_assets:
                _write_scene_asset(entry, r.weights)
    return entries


def _scene_entry(model: str, domain: str, r: Any, init: Path, test_sets: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one trained scene model: its file, hashes, recipe and scores."""
    from ..builtin.checkpoints import CHECKPOINT_DIR, scene_checkpoint_file
    from ..engine.segmentation import evaluate_segmentation

    net = create_model(model, pretrained=str(r.weights))
    scores = {}
    for test_domain, ds in test_sets.items():
        m, _ = evaluate_segmentation(net, ds)
        scores[test_domain] = {k: v for k, v in m.as_record_metrics().items() if k != "per_class_iou"}
    return {
        "file": scene_checkpoint_file(model, domain).rsplit("/", 1)[-1],
        "model": model,
        "domain": domain,
        "sha256": sha256_file(r.weights),
        "recipe": json.loads(json.dumps(BUILTIN_SCENE_RECIPE)),
        "backbone_init": {"file": f"{'/'.join(CHECKPOINT_DIR)}/{init.name}", "sha256": sha256_file(init)},
        "eval": scores,
        "final_loss": r.losses[-1] if r.losses else None,
    }


def _write_scene_asset(entry: dict[str, Any], weights: Path) -> None:
    """Copy the weights into the package's checkpoints and merge ``entry`` into their manifest."""
    import shutil

    from filelock import FileLock

    from ..builtin.checkpoints import SCENE_CHECKPOINT_DIR, SCENE_MANIFEST, scene_checkpoint_file
    from ..config import asset_path

    dest = asset_path(*scene_checkpoint_file(entry["model"], entry["domain"]).split("/"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, dest)
    man_path = asset_path(*SCENE_CHECKPOINT_DIR, SCENE_MANIFEST)
    # Merge under a lock: the two domains may be trained by two processes at once.
    with FileLock(str(man_path) + ".lock"):
        old = json.loads(man_path.read_text())["checkpoints"] if man_path.is_file() else []
        merged = {e["file"]: e for e in old}
        merged[entry["file"]] = entry
        man_path.write_text(json.dumps({"checkpoints": sorted(merged.values(), key=lambda e: e["file"])}, indent=2) + "\n")

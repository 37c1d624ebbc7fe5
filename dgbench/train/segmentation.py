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
images of every global batch (DDP), SyncBN on by default across CUDA ranks. AMP (fp16 autocast + grad
scaler) on CUDA when ``amp=True``.
"""
from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
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
from ..errors import CheckpointError
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD, create_model, model_info, resolve_name
from ..models.weights import load_state_dict_strict, load_weights_only
from ..runtime import Runtime

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


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _jsonable(cfg: SegTrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


def load_train_checkpoint(path: Path) -> dict[str, Any]:
    return load_weights_only(path, "training checkpoint")


def _check_compatible(ckpt: dict[str, Any], cfg: SegTrainConfig, path: Path) -> None:
    old = ckpt.get("config", {})
    if old.get("num_classes") != cfg.num_classes:
        raise CheckpointError(
            f"checkpoint {path} was trained for {old.get('num_classes')} classes, this run has {cfg.num_classes}; "
            "use another --out directory or the matching number of classes"
        )
    for key in ("model", "dataset", "batch_size", "epochs", "iterations", "init_weights_sha256", "subset_sha256"):
        if old.get(key) != getattr(cfg, key):
            raise CheckpointError(
                f"checkpoint {path} is from a run with {key}={old.get(key)!r}, this run has {key}={getattr(cfg, key)!r}; "
                "resume with the same settings or use another --out directory"
            )


def train_segmentation(
    dataset: str = "cityscapes",
    model: str = "deeplab_resnet50_ibn_a",
    *,
    root: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "runs/segmentation",
    model_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    split: str = "train",
    epochs: int = 80,
    batch_size: int = 16,
    base_lr: float = 0.01,
    lr_power: float = 0.9,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    head_lr_mult: float = 1.0,
    crop_size: tuple[int, int] = (713, 713),
    scale_range: tuple[float, float] = (0.5, 2.0),
    aspect_range: tuple[float, float] = (0.8, 1.25),
    mirror: bool = True,
    gta5_size: tuple[int, int] = (1024, 563),
    gta5_fraction: float = 0.25,
    gta5_split_file: str | None = None,
    gta5_mismatch: str = "error",
    gta5_unreadable: str = "error",
    quirk_policy: QuirkPolicy | None = None,
    subset_seed: int = 0,
    seed: int = 0,
    pretrained_backbone: bool | str = True,
    resume: bool | str | os.PathLike = True,
    stop_after: int | None = None,
    checkpoint_every: int | None = None,
    device: str | None = None,
    amp: bool = True,
    sync_bn: bool | None = None,
    num_workers: int = 4,
    progress: bool = True,
    iterations: int | None = None,
    init_weights: str | os.PathLike | None = None,
    indices: Sequence[int] | None = None,
) -> SegTrainResult:
    """Train a segmentation model; see the module docstring for the recipe and the checkpoints.

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
        amp: mixed precision (fp16 autocast + GradScaler) on CUDA; fp32 elsewhere.
        sync_bn: SyncBatchNorm across ranks; default (None): on under torchrun with CUDA.
        iterations: the schedule's length in iterations (poly decay over them); default
            ``epochs`` x iterations per epoch.
        init_weights: fine-tuning: a whole model's weights (``model.pth``) to start from, loaded
            strictly (``pretrained_backbone`` is then ignored); its sha256 is in the config.
        indices: train on these images of the split only (fine-tuning on a fraction); the
            subset's size and sha256 are in the config.
    """
    if num_classes is None:
        from ..builtin.digit_scenes import NUM_CLASSES as SCENE_CLASSES, SCENE_DOMAINS

        num_classes = SCENE_CLASSES if dataset in SCENE_DOMAINS else 19
    cfg = SegTrainConfig(
        dataset=dataset, model=segmentation_model_name(model, dataset), model_kwargs=dict(model_kwargs or {}),
        num_classes=num_classes, split=split, epochs=epochs, batch_size=batch_size, base_lr=base_lr,
        lr_power=lr_power, momentum=momentum, weight_decay=weight_decay, head_lr_mult=head_lr_mult,
        crop_size=tuple(crop_size), scale_range=tuple(scale_range), aspect_range=tuple(aspect_range),
        mirror=mirror, gta5_size=tuple(gta5_size), gta5_fraction=gta5_fraction, subset_seed=subset_seed, seed=seed,
        iterations=iterations,
    )
    init_state = None
    if init_weights is not None:
        init_state, cfg.init_weights_sha256 = read_init_weights(Path(init_weights))
    if indices is not None:
        indices = [int(i) for i in indices]
        cfg.subset_size, cfg.subset_sha256 = len(indices), _indices_sha256(indices)
    with Runtime.start(device or "auto") as rt:
        return _train(rt, cfg, root, out_dir, resume, quirk_policy, gta5_mismatch, gta5_unreadable, gta5_split_file,
                      pretrained_backbone, stop_after, checkpoint_every, amp, sync_bn, num_workers, progress,
                      init_state=init_state, indices=indices)


def read_init_weights(path: Path) -> tuple[dict[str, Any], str]:
    """A fine-tune's starting weights (a state dict, or a training checkpoint's model) and their sha256."""
    import hashlib

    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint to fine-tune from")
    state = load_train_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state, hashlib.sha256(path.read_bytes()).hexdigest()


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


def _train(rt: Runtime, cfg: SegTrainConfig, root: Any, out_dir: Any, resume: Any, quirk_policy: Any, gta5_mismatch: str,
           gta5_unreadable: str, gta5_split_file: Any, pretrained_backbone: Any, stop_after: int | None,
           checkpoint_every: int | None, amp: bool, sync_bn: bool | None, num_workers: int, progress: bool,
           init_state: dict[str, Any] | None = None, indices: Sequence[int] | None = None) -> SegTrainResult:
    """The training loop of :func:`train_segmentation` on a started runtime (device, ranks)."""
    rank, world, dev = rt.rank, rt.world_size, rt.device
    distributed = rt.distributed
    dataset, batch_size, epochs, seed, num_classes = cfg.dataset, cfg.batch_size, cfg.epochs, cfg.seed, cfg.num_classes
    base_lr, lr_power, momentum, weight_decay, head_lr_mult = cfg.base_lr, cfg.lr_power, cfg.momentum, cfg.weight_decay, cfg.head_lr_mult
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world} processes")
    per_rank = batch_size // world

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    start_ckpt: dict[str, Any] | None = None
    resume_path = Path(resume) if isinstance(resume, (str, os.PathLike)) else (ckpt_path if resume else None)
    if resume_path is not None:
        if resume_path.is_file():
            start_ckpt = load_train_checkpoint(resume_path)
            _check_compatible(start_ckpt, cfg, resume_path)
        elif not isinstance(resume, bool):
            raise CheckpointError(f"checkpoint {resume_path} to resume from does not exist")

    torch.manual_seed(seed)
    random.seed(seed)
    policy = quirk_policy or QuirkPolicy(size_mismatch=gta5_mismatch, unreadable=gta5_unreadable)
    base = build_train_dataset(cfg, root, policy, gta5_split_file)
    if indices is not None:
        base = _Subset(base, indices)
    aug = SegAugment(cfg.crop_size, cfg.scale_range, cfg.aspect_range, cfg.mirror)
    train_set = AugmentedSegmentation(base, aug, seed)
    iters_per_epoch = len(train_set) // batch_size
    if iters_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images are fewer than one batch of {batch_size}")
    total = cfg.iterations if cfg.iterations is not None else epochs * iters_per_epoch

    net = create_model(
        cfg.model, num_classes=num_classes,
        pretrained_backbone=pretrained_backbone if start_ckpt is None and init_state is None else False, **cfg.model_kwargs,
    )
    if init_state is not None and start_ckpt is None:
        load_state_dict_strict(net, init_state, f"to fine-tune from (sha256 {cfg.init_weights_sha256})", new_head_ok=False)
    # The paper's batch of 16 is normalized as one batch: SyncBN by default across CUDA ranks, so a
    # launch of 8 GPUs x 2 images gives every BN the statistics of 16 crops, not of 2.
    if sync_bn is None:
        sync_bn = distributed and dev.type == "cuda"
    if sync_bn and distributed:
        if dev.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        else:  # torch's SyncBatchNorm runs on GPUs only; say so instead of failing in DDP's init
            import warnings

            warnings.warn("sync_bn needs CUDA; training with per-process BatchNorm on CPU")
    net.to(dev)
    groups = net.param_groups(base_lr, head_lr_mult) if hasattr(net, "param_groups") else [
        {"params": list(net.parameters()), "lr": base_lr, "lr_mult": 1.0}
    ]
    opt = torch.optim.SGD(groups, lr=base_lr, momentum=momentum, weight_decay=weight_decay)
    use_amp = amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    it = 0
    if start_ckpt is not None:
        load_state_dict_strict(net, start_ckpt["model"], str(resume_path), new_head_ok=False)
        opt.load_state_dict(start_ckpt["optimizer"])
        if "scaler" in start_ckpt and use_amp:
            scaler.load_state_dict(start_ckpt["scaler"])
        it = int(start_ckpt["iteration"])
        _set_rng_state(start_ckpt["rng"])
    resumed_from = it
    ddp_net: nn.Module = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None) if distributed else net

    # Normalize as the model's configuration says (ImageNet statistics for the ResNet-50 DeepLabs).
    cfg_in = getattr(net, "pretrained_cfg", None)
    mean = torch.tensor(getattr(cfg_in, "mean", IMAGENET_MEAN), device=dev).view(1, 3, 1, 1)
    std = torch.tensor(getattr(cfg_in, "std", IMAGENET_STD), device=dev).view(1, 3, 1, 1)
    stop = min(total, stop_after) if stop_after is not None else total
    losses: list[float] = []

    def save(iteration: int) -> None:
        if rank != 0:
            return
        _atomic_save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "iteration": iteration,
                "total_iterations": total,
                "rng": _rng_state(),
                "config": _jsonable(cfg),
            },
            ckpt_path,
        )

    bar = None
    if progress and rank == 0:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        task = bar.add_task(f"train {cfg.model} on {dataset}", total=stop, completed=it, info="")
        bar.start()
    ddp_net.train()
    try:
        while it < stop:
            epoch, offset = divmod(it, iters_per_epoch)
            train_set.set_epoch(epoch)
            sampler = EpochSampler(len(train_set), seed, epoch, start=offset * batch_size, rank=rank, world=world)
            loader = DataLoader(
                train_set, batch_size=per_rank, sampler=sampler, num_workers=num_workers, drop_last=True,
                pin_memory=dev.type == "cuda",
            )
            for images, labels in loader:
                if it >= stop or it // iters_per_epoch != epoch:
                    break
                lr_now = poly_lr(base_lr, it, total, lr_power)
                for g in opt.param_groups:
                    g["lr"] = lr_now * g.get("lr_mult", 1.0)
                x = (images.to(dev, non_blocking=True).float() / 255.0 - mean) / std
                y = labels.to(dev, non_blocking=True)
                with torch.autocast(device_type=dev.type, enabled=use_amp):
                    logits = ddp_net(x)
                loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                it += 1
                lv = float(loss.detach())
                losses.append(lv)
                if not math.isfinite(lv):
                    save(it - 1)
                    raise FloatingPointError(f"loss is {lv} at iteration {it}; last good checkpoint in {ckpt_path}")
                if bar is not None:
                    bar.update(task, completed=it, info=f"loss {lv:.4f} lr {lr_now:.2e}")
                if (checkpoint_every and it % checkpoint_every == 0) or it % iters_per_epoch == 0:
                    save(it)
        save(it)
    finally:
        if bar is not None:
            bar.stop()

    weights: Path | None = None
    if it >= total and rank == 0:
        weights = out / WEIGHTS
        _atomic_save(net.state_dict(), weights)
        (out / "model.json").write_text(json.dumps({"model": cfg.model, "model_kwargs": cfg.model_kwargs, "num_classes": num_classes, "config": _jsonable(cfg)}, indent=2))
    return SegTrainResult(out, ckpt_path, weights, it, total, losses, resumed_from)


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
    import hashlib
    import shutil

    from ..config import asset_path
    from ..builtin.checkpoints import CHECKPOINT_DIR, SCENE_CHECKPOINT_DIR, SCENE_MANIFEST, checkpoint_file, scene_checkpoint_file
    from ..builtin.domains import SCENE_DOMAINS
    from ..data.base import build_dataset
    from ..engine.segmentation import evaluate_segmentation

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
            net = create_model(model, pretrained=str(r.weights))
            scores = {}
            for test_domain, ds in test_sets.items():
                m, _ = evaluate_segmentation(net, ds)
                scores[test_domain] = {k: v for k, v in m.as_record_metrics().items() if k != "per_class_iou"}
            rel = scene_checkpoint_file(model, domain)
            entry = {
                "file": rel.rsplit("/", 1)[-1],
                "model": model,
                "domain": domain,
                "sha256": hashlib.sha256(r.weights.read_bytes()).hexdigest(),
                "recipe": json.loads(json.dumps(BUILTIN_SCENE_RECIPE)),
                "backbone_init": {"file": f"{'/'.join(CHECKPOINT_DIR)}/{init.name}", "sha256": hashlib.sha256(init.read_bytes()).hexdigest()},
                "eval": scores,
                "final_loss": r.losses[-1] if r.losses else None,
            }
            entries.append(entry)
            if write_assets:
                dest = asset_path(*rel.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r.weights, dest)
                man_path = asset_path(*SCENE_CHECKPOINT_DIR, SCENE_MANIFEST)
                # Merge under a lock: the two domains may be trained by two processes at once.
                from filelock import FileLock

                with FileLock(str(man_path) + ".lock"):
                    old = json.loads(man_path.read_text())["checkpoints"] if man_path.is_file() else []
                    merged = {e["file"]: e for e in old}
                    merged[entry["file"]] = entry
                    man_path.write_text(json.dumps({"checkpoints": sorted(merged.values(), key=lambda e: e["file"])}, indent=2) + "\n")
    return entries

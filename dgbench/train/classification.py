"""Seeded, deterministic classifier training on the built-in digits domains (CPU).

One call trains one registered model on the train split of ``digits`` or ``typeset-digits`` and
writes two files: the checkpoint (a plain ``state_dict``, loadable strictly with
``weights_only=True``) and a JSON sidecar (config, seed, data fingerprints, final metrics, the
checkpoint's sha256, versions, duration).

Determinism: the same seed, torch build, thread count and machine give the same bytes. What is
fixed: ``torch.manual_seed`` (weights), a dedicated ``torch.Generator`` for the per-epoch shuffle,
``torch.use_deterministic_algorithms(True)``, the number of intra-op threads (``num_threads``,
recorded; default 1: the reduction order of a CPU kernel depends on the thread count, so one
thread gives the same bytes on any machine size, and on a shared 2-core machine a single thread
is also faster than two threads that wait on each other), no data augmentation, and the
checkpoint serialized to memory first (``torch.save`` to a file embeds the file's name in the
archive; to a buffer it does not), so the file's hash depends on the weights only.

Recipe (defaults): SGD, momentum 0.9, Nesterov, weight decay 5e-4 (not on norm parameters or
biases), learning rate ``lr`` with a one-epoch linear warm-up then cosine decay to 0, batch 64,
cross-entropy. Inputs are normalized with the real digits' mean/std (:data:`dgbench.builtin.digits.MEAN`)
for both domains, as a deployed model would be.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..builtin import digits as D
from ..builtin.recipes import CLASSIFIER_RECIPE
from ..errors import DgbenchError

# The defaults are the recipe of the shipped checkpoints.
DEFAULT_EPOCHS: int = CLASSIFIER_RECIPE["epochs"]
DEFAULT_BATCH_SIZE: int = CLASSIFIER_RECIPE["batch_size"]
DEFAULT_LR: float = CLASSIFIER_RECIPE["lr"]
DEFAULT_WEIGHT_DECAY: float = CLASSIFIER_RECIPE["weight_decay"]
DEFAULT_THREADS: int = CLASSIFIER_RECIPE["num_threads"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (stored in the sidecar)."""

    model: str
    dataset: str
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    momentum: float = 0.9
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    warmup_epochs: int = 1
    seed: int = 0
    num_threads: int = DEFAULT_THREADS
    max_steps: int | None = None  # stop early (tests); None = all epochs
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a training run produced."""

    config: TrainConfig
    model: nn.Module
    metrics: dict[str, float]
    losses: list[float]  # per step
    sha256: str | None = None
    checkpoint: Path | None = None
    sidecar: Path | None = None
    duration_s: float = 0.0
    sidecar_data: dict[str, Any] = field(default_factory=dict)


# cuBLAS (CUDA >= 10.2) refuses deterministic mode unless this is set before CUDA initialises.
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE = ":4096:8"


def ensure_cublas_workspace() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` when unset, before any CUDA work; too late (CUDA already
    initialised without it), one line saying what to export, instead of cuBLAS's error mid-training."""
    if os.environ.get(CUBLAS_ENV):
        return
    if torch.cuda.is_initialized():
        raise DgbenchError(f"deterministic training on CUDA needs {CUBLAS_ENV} set before CUDA starts: "
                           f"export {CUBLAS_ENV}={CUBLAS_WORKSPACE} and run again")
    os.environ[CUBLAS_ENV] = CUBLAS_WORKSPACE  # read by cuBLAS when CUDA initialises (later in this process)


@contextlib.contextmanager
def deterministic(seed: int, num_threads: int) -> Iterator[torch.Generator]:
    """Seed torch, fix the thread count, enforce deterministic kernels; restore on exit."""
    ensure_cublas_workspace()
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_rng = torch.get_rng_state()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_rng_state(prev_rng)


def serialize_state_dict(model: nn.Module) -> bytes:
    """The checkpoint bytes: ``torch.save`` of the state_dict into a buffer (name-independent)."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, buf)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No decay on norm affine parameters and biases (1-d tensors): standard, and it keeps IN/BN
    # scales from being pulled to zero on a tiny model.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of ``model`` on normalized inputs ``x`` (eval mode)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / len(y)


def _progress(enabled: bool):  # -> rich Progress or a no-op context
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # The default rich console (stdout); the CLI layer is above this one and is not imported.
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:5.1f}%"), TimeElapsedColumn(),
        transient=False,
    )


def _fit(model: nn.Module, x_train: Tensor, y_train: Tensor, gen: torch.Generator, cfg: TrainConfig, *,
         total: int, warmup: int, label: str, progress: bool) -> list[float]:
    """``total`` SGD steps (Nesterov, warmup then cosine) over epochs reshuffled by ``gen``;
    returns the per-step losses. Kept apart from :func:`train_classifier` so that the loop the
    numbers depend on reads in one piece."""
    n, batch_size, lr = len(y_train), cfg.batch_size, cfg.lr
    model.train()
    opt = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=lr, momentum=cfg.momentum, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    losses: list[float] = []
    step = 0
    with _progress(progress) as bar:
        task = bar.add_task(label, total=total, loss=float("nan"), acc=0.0) if bar else None
        while step < total:
            perm = torch.randperm(n, generator=gen)
            seen = correct = 0
            for i in range(0, n, batch_size):
                if step >= total:
                    break
                idx = perm[i : i + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total, warmup, lr)
                logits = model(xb)
                loss = loss_fn(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                seen += len(yb)
                correct += int((logits.argmax(1) == yb).sum())
                step += 1
                if bar is not None:
                    bar.update(task, advance=1, loss=losses[-1], acc=100.0 * correct / seen)
    return losses


def train_classifier(
    model_name: str,
    dataset: str,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    num_threads: int = DEFAULT_THREADS,
    max_steps: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    model_factory: Callable[[], nn.Module] | None = None,
    **model_kwargs: Any,
) -> TrainResult:
    """Train ``model_name`` on the train split of built-in ``dataset``; evaluate on its test split.

    Args:
        model_name: a registry name (``small_resnet_ibn_a``); see :func:`resolve_model` for aliases.
        dataset: ``digits`` or ``typeset-digits``.
        out: checkpoint path (``.pth``); the sidecar is written beside it as ``<stem>.json``.
            ``None`` writes nothing (the weights stay in the returned model).
        model_factory: build the network with this instead of the registry (tests).
        **model_kwargs: variant knobs passed to the registry constructor.
    """
    if dataset not in D.DOMAINS:
        raise DgbenchError(f"dgbench trains on the built-in domains only ({', '.join(D.DOMAINS)}), not {dataset!r}")
    if model_factory is None:
        model_name = resolve_model(model_name, dataset)
    cfg = TrainConfig(
        model=model_name, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        weight_decay=weight_decay, num_threads=num_threads, max_steps=max_steps, model_kwargs=dict(model_kwargs),
    )
    train_set, test_set = builtin_split(dataset, "train"), builtin_split(dataset, "test")
    x_train, y_train = D.normalize(train_set.images), train_set.labels
    x_test, y_test = D.normalize(test_set.images), test_set.labels
    n = len(y_train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warmup = min(total, cfg.warmup_epochs * steps_per_epoch)
    start = time.perf_counter()
    with deterministic(seed, num_threads) as gen:
        if model_factory is not None:
            model = model_factory()
        else:
            from ..models import create_model

            model = create_model(model_name, num_classes=D.NUM_CLASSES, **model_kwargs)
        losses = _fit(model, x_train, y_train, gen, cfg, total=total, warmup=warmup,
                      label=f"{model_name} on {dataset}", progress=progress)
        test_acc = evaluate_accuracy(model, x_test, y_test)
        train_acc = evaluate_accuracy(model, x_train, y_train)
    duration = time.perf_counter() - start
    metrics = {
        "final_loss": losses[-1] if losses else float("nan"),
        "train_acc": train_acc,
        "test_acc": test_acc,
        "test_err": 100.0 - test_acc,
    }
    result = TrainResult(config=cfg, model=model, metrics=metrics, losses=losses, duration_s=duration)
    if out is not None:
        write_checkpoint(result, Path(out))
    return result


def builtin_split(dataset: str, split: str) -> Any:
    """A built-in domain's split through the dataset registry, as evaluation builds it, at the
    data's native 32x32 (``.images`` uint8 ``[N, 3, 32, 32]``, ``.labels`` int64 ``[N]``)."""
    from ..data.base import build_dataset

    return build_dataset(dataset, split=split, preprocess=D.PREPROCESS)


def write_checkpoint(result: TrainResult, path: Path) -> None:
    """Write the checkpoint and its JSON sidecar; fills ``result.sha256/checkpoint/sidecar``."""
    from ..results.record import versions

    data = serialize_state_dict(result.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    cfg = result.config
    sidecar = {
        "file": path.name,
        "sha256": sha256_bytes(data),
        "model": cfg.model,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "config": asdict(cfg),
        "data_fingerprint": {
            "train": builtin_split(cfg.dataset, "train").fingerprint(),
            "test": builtin_split(cfg.dataset, "test").fingerprint(),
        },
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        "num_params": sum(p.numel() for p in result.model.parameters()),
        "duration_s": round(result.duration_s, 2),
        "versions": versions(),
    }
    side = path.with_suffix(".json")
    side.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    result.sha256, result.checkpoint, result.sidecar, result.sidecar_data = sidecar["sha256"], path, side, sidecar


def resolve_model(name: str, dataset: str | None = None) -> str:
    """The registry name to train or evaluate for ``name`` on ``dataset``.

    On a built-in digits domain, a short alias of the zoo (``ibn_a``) means the *small* model of
    that variant (``small_resnet_ibn_a``): see :func:`dgbench.builtin.names.small_name_for`.
    Full registry names (``resnet50_ibn_a``) are taken as they are.
    """
    from ..builtin.names import small_name_for
    from ..models import registry

    return small_name_for(name) if dataset in D.DOMAINS else registry.resolve_name(name)

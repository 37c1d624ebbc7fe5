"""Train one model on several domains and evaluate it on every domain (one leave-one-domain-out run).

:func:`train_run` takes one :class:`DGTrainConfig` (everything that determines the weights), the
data (:class:`~dgbench.data.domain_folders.DomainData`) with the trial's held-in/held-out splits,
and a device. Each step it draws one minibatch of ``batch_size`` images per training domain from
that domain's "in" split and calls the algorithm's ``update``. Every ``checkpoint_freq`` steps and
at the last step it evaluates: the held-out domains on their "in" split (the test accuracy) and
their "out" split (the oracle's validation), the training domains on their "out" split (the
in-domain validation DomainBed's selection reads).

Determinism and resume: the minibatch of step ``s`` is a function of (seed, domain, s) only
(per-epoch permutations from a generator seeded by sha256; its augmentation, when the
``data_augmentation`` hyperparameter is on, likewise: :mod:`.dg_augment`), weights are seeded, the thread count
is fixed (``num_threads``) and deterministic kernels enforced; at each evaluation the state
(weights, optimizer, step, evaluations so far, the CPU, Python and CUDA random states:
:mod:`.checkpointing`) is written atomically to ``work_dir``, and a
run started again resumes from it with the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.domain_folders import DomainData
from ..shifts import normalize
from .checkpointing import atomic_save, load_train_checkpoint, rng_state, set_rng_state
from .classification import deterministic
from .dg_algorithms import Algorithm, algorithm_class
from .dg_augment import augment_batch

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class DGTrainConfig:
    """What determines one run's weights (stored beside its record)."""

    model: str
    algorithm: str
    hparams: dict[str, Any]
    train_domains: tuple[str, ...]
    steps: int
    checkpoint_freq: int
    seed: int = 0
    num_threads: int | None = 1  # None: leave torch's thread count (GPUs)
    pretrained: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 256


@dataclass
class DGRunResult:
    config: DGTrainConfig
    evaluations: list[dict[str, Any]]  # per evaluated step: {"step", "loss", "acc": {domain: {"in", "out"}}}
    resumed_from: int | None
    duration_s: float
    weights_sha256: str | None  # of the initial weights (ImageNet), None from scratch


def batch_indices(pool: Sequence[int], batch: int, seed: int, domain: str, step: int) -> list[int]:
    """Step ``step``'s minibatch of ``pool``: positions ``[step*batch, (step+1)*batch)`` of the
    concatenated per-epoch permutations (epoch e's seeded by sha256 of seed/domain/e)."""
    n, out, pos = len(pool), [], step * batch
    while len(out) < batch:
        epoch, offset = divmod(pos, n)
        take = epoch_permutation(seed, domain, epoch, n)[offset: offset + batch - len(out)]
        out += [pool[i] for i in take]
        pos += len(take)
    return out


# A run needs the current epoch of each training domain (and the next, at a boundary): 16 covers
# DomainNet's five training domains (an order costs ~40 bytes an image, so only a few are kept).
@functools.lru_cache(maxsize=16)
def epoch_permutation(seed: int, domain: str, epoch: int, n: int) -> tuple[int, ...]:
    """The order of epoch ``epoch`` of a pool of ``n``: a function of its arguments only, so it is
    drawn once per epoch (cached) instead of once per step (a tuple: the cache's copy cannot change)."""
    seed_e = int.from_bytes(hashlib.sha256(f"{seed}/{domain}/{epoch}".encode()).digest()[:8], "little")
    return tuple(torch.randperm(n, generator=torch.Generator().manual_seed(seed_e)).tolist())


@torch.no_grad()
def accuracy(algo: Algorithm, data: DomainData, domain: str, indices: Sequence[int], device: torch.device,
             batch: int) -> float | None:
    """Top-1 accuracy in percent on ``indices`` of ``domain`` (None for no images)."""
    if not indices:
        return None
    algo.eval()
    correct = 0
    for i in range(0, len(indices), batch):
        idx = list(indices[i: i + batch])
        pred = algo.predict(normalize(data.load(domain, idx).to(device), data.mean, data.std)).argmax(1).cpu()
        correct += int((pred == data.labels[domain][idx]).sum())
    algo.train()
    return 100.0 * correct / len(indices)


def evaluate_all(algo: Algorithm, data: DomainData, splits: dict[str, dict[str, list[int]]],
                 cfg: DGTrainConfig, device: torch.device) -> dict[str, dict[str, float | None]]:
    acc = {}
    for d in data.domains:
        held_out = d not in cfg.train_domains
        acc[d] = {"in": accuracy(algo, data, d, splits[d]["in"], device, cfg.eval_batch_size) if held_out else None,
                  "out": accuracy(algo, data, d, splits[d]["out"], device, cfg.eval_batch_size)}
    return acc


def build_algorithm(cfg: DGTrainConfig, num_classes: int, device: torch.device) -> Algorithm:
    from ..models import create_model

    net = create_model(cfg.model, pretrained=cfg.pretrained, num_classes=num_classes, **cfg.model_kwargs)
    algo = algorithm_class(cfg.algorithm)(net, cfg.hparams).to(device)
    algo.weights_sha256 = getattr(net, "weights_sha256", None)  # type: ignore[assignment]
    return algo


def _save_state(path: Path, algo: Algorithm, step: int, evaluations: list[dict[str, Any]]) -> None:
    atomic_save({"algorithm": algo.state_dict(), "optimizer": algo.optimizer.state_dict(), "step": step,
                 "evaluations": evaluations, "rng": rng_state()}, path)


def _resume(state: Path, algo: Algorithm) -> tuple[int, list[dict[str, Any]]]:
    """Load ``state`` (written by :func:`_save_state`) into ``algo``; its step and evaluations so far."""
    saved = load_train_checkpoint(state)  # a damaged file: one line naming it
    algo.load_state_dict(saved["algorithm"])
    algo.optimizer.load_state_dict(saved["optimizer"])  # moves its tensors to the parameters' device
    set_rng_state(saved["rng"])
    return saved["step"], saved["evaluations"]


def train_run(cfg: DGTrainConfig, data: DomainData, splits: dict[str, dict[str, list[int]]], device: torch.device,
              work_dir: Path | None = None) -> DGRunResult:
    """Train ``cfg`` on its training domains' "in" splits; evaluate (see the module docstring)."""
    t0 = time.perf_counter()
    threads = cfg.num_threads or torch.get_num_threads()
    with deterministic(cfg.seed, threads):
        algo = build_algorithm(cfg, len(data.classes), device)
        algo.train()
        step, evaluations, resumed = 0, [], None
        state = work_dir / STATE_FILE if work_dir is not None else None
        if state is not None and state.is_file():
            step, evaluations = _resume(state, algo)
            resumed = step
        bs = int(cfg.hparams["batch_size"])
        loss = float("nan")
        while step < cfg.steps:
            batches = []
            for d in cfg.train_domains:
                idx = batch_indices(splits[d]["in"], bs, cfg.seed, d, step)
                images = data.load(d, idx)
                if cfg.hparams.get("data_augmentation"):
                    images = augment_batch(images, cfg.seed, d, step)
                batches.append((normalize(images.to(device), data.mean, data.std), data.labels[d][idx].to(device)))
            loss = algo.update(batches)["loss"]
            step += 1
            if step % cfg.checkpoint_freq == 0 or step == cfg.steps:
                evaluations.append({"step": step, "loss": loss, "acc": evaluate_all(algo, data, splits, cfg, device)})
                if state is not None:
                    state.parent.mkdir(parents=True, exist_ok=True)
                    _save_state(state, algo, step, evaluations)
    return DGRunResult(cfg, evaluations, resumed, time.perf_counter() - t0, algo.weights_sha256)

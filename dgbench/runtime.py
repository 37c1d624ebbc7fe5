"""One runtime for device, ranks, sharding and progress: evaluation, inference and training use it.

``Runtime.start(device)`` resolves the device for *this* process and joins the process group
when launched by ``torchrun`` (``WORLD_SIZE`` > 1); ``close()`` (or leaving its ``with`` block)
leaves the group again. Nothing else in dgbench opens or destroys a process group.

Device rules:

* ``auto``: the local rank's GPU when CUDA is available, else the CPU;
* ``cuda``: the local rank's GPU (``cuda:<LOCAL_RANK>``); ``cuda:N`` that GPU (one process only);
* more ranks on a node than GPUs is an error that says so: dgbench never silently puts two
  ranks on one GPU (NCCL refuses it) nor silently moves a rank to the CPU.

Precision: ``fp32`` means IEEE fp32 everywhere (TF32 off for matmuls and cuDNN convolutions,
which PyTorch enables for convolutions by default); ``tf32`` is its own, recorded, precision.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import DgbenchError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def env_ranks() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` as torchrun sets them; ``(0, 0, 1)`` outside it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device this process runs on (see the module docstring for the rules)."""
    if local_rank is None:
        local_rank = env_ranks()[1]
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", env_ranks()[2]))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DgbenchError(f"--device {name!r}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise DgbenchError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    count = torch.cuda.device_count()
    if dev.index is not None:
        if local_world > 1:
            raise DgbenchError(f"--device {name}: under torchrun every rank needs its own GPU; "
                               "pass --device cuda (each rank takes cuda:<LOCAL_RANK>)")
        if dev.index >= count:
            raise DgbenchError(f"--device {name}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
        return dev
    if local_world > count:
        raise DgbenchError(
            f"{local_world} ranks on this node but {count} GPU(s): one rank per GPU. Launch "
            f"torchrun --nproc-per-node {count}, or run the ranks on the CPU with --device cpu")
    return torch.device("cuda", local_rank)


def set_precision(precision: str) -> None:
    """Make ``fp32`` mean fp32 (no TF32 in matmuls or convolutions); ``tf32`` allows it."""
    if precision not in PRECISIONS:
        raise DgbenchError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Deterministic, disjoint, complete: rank r takes r, r + world, ... (no padding)."""
    return list(range(rank, n, world))


@dataclass
class Runtime:
    """Where this process runs and who it is among the ranks."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # this runtime opened the process group, so it closes it

    @classmethod
    def start(cls, device: str | torch.device = "auto") -> Runtime:
        """Resolve the device and join torchrun's process group (when launched by it)."""
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        rank, _, world = env_ranks()
        owns = False
        if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            owns = True
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return cls(dev, rank, world, owns)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> list[int]:
        return shard_indices(n, self.rank, self.world_size)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks (a no-op alone); returns a CPU tensor."""
        if not self.distributed:
            return tensor.cpu()
        t = tensor.to(self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t)
        return t.cpu()

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def progress(self, total: int, description: str, enabled: bool = True,
                 unit: str = "img") -> Iterator[Callable[[int], None]]:
        """A rich progress bar on stderr (rank 0 only); yields ``advance(n)``."""
        with progress_bar(enabled and self.is_main, total, description, unit) as advance:
            yield advance


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the joined process group; ``(0, 1)`` outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str, unit: str = "img") -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:,.1f} {unit}/s" if task.speed else f"- {unit}/s", style="cyan")

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(),
            TimeRemainingColumn())
    # stderr, so that `--format json` keeps stdout clean
    with Progress(*cols, console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n: prog.advance(task, n)


def default_workers(device: torch.device) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # On a CPU device the forward passes use the cores too; decoding is a few percent of the work.
    return min(8, cpus) if device.type == "cuda" else max(1, min(4, cpus // 2))

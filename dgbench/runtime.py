"""One runtime for device, ranks, sharding and progress: evaluation, inference and training use it.

``Runtime.start(device)`` resolves the device for *this* process and joins the process group
when launched by ``torchrun`` (``WORLD_SIZE`` > 1); ``close()`` (or leaving its ``with`` block)
leaves the group again. Nothing else in dgbench opens or destroys a process group.

Device rules:

* ``auto``: the local rank's GPU when CUDA is available, else the CPU;
* ``cuda``: the local rank's GPU (``cuda:<LOCAL_RANK>``); ``cuda:N`` that GPU (one process only);
* more ranks on a node than GPUs is an error that says so: dgbench never silently puts two
  ranks on one GPU (NCCL refuses it) nor silently moves a rank to the CPU.

Precision is the runtime's too: ``Runtime.start(device, precision)`` checks that the device can
run it, sets the TF32 flags for the runtime's life, and engines, trainers and records read
``runtime.precision`` (forwards under ``runtime.autocast()``), so the precision a record names is
the one that ran:

* ``fp32``: IEEE fp32 everywhere (TF32 off for matmuls and cuDNN convolutions, which PyTorch
  enables for convolutions by default);
* ``tf32``: fp32 with TF32 matmuls and convolutions: a CUDA mode, refused elsewhere (on the CPU
  it would run as fp32 while saying tf32);
* ``bf16`` / ``fp16``: autocast to that dtype on the runtime's device (CPU autocast included);
  training scales fp16 losses (:meth:`Runtime.grad_scaler`).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


def check_precision(precision: str, device: torch.device | None = None) -> str:
    """``precision`` if it is one and ``device`` can run it as named; a one-line error otherwise."""
    if precision not in PRECISIONS:
        raise DgbenchError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision == "tf32" and device is not None and device.type != "cuda":
        raise DgbenchError(f"--precision tf32: TensorFloat-32 is a CUDA matmul/convolution mode; on {device.type} "
                           "it would run as fp32 (use --precision fp32, or bf16 / fp16 autocast)")
    return precision


def _tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _set_tf32_flags(flags: tuple[bool, bool]) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def set_precision(precision: str) -> None:
    """Make ``fp32`` mean fp32 (no TF32 in matmuls or convolutions); ``tf32`` allows it."""
    allow = check_precision(precision) == "tf32"
    _set_tf32_flags((allow, allow))


@contextlib.contextmanager
def precision_flags(precision: str) -> Iterator[None]:
    """:func:`set_precision` for a block; the previous TF32 flags come back after it."""
    before = _tf32_flags()
    set_precision(precision)
    try:
        yield
    finally:
        _set_tf32_flags(before)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``precision``'s dtype on ``device`` (fp32 and tf32: none)."""
    dtype = PRECISIONS[check_precision(precision)]
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
    precision: str = "fp32"  # what every forward (and backward) of this runtime runs in
    # The TF32 flags before start() set this runtime's: close() puts them back.
    _flags_before: tuple[bool, bool] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_precision(self.precision, self.device)

    @classmethod
    def start(cls, device: str | torch.device = "auto", precision: str = "fp32") -> Runtime:
        """Resolve the device, check and set the precision, and join torchrun's process group
        (when launched by it)."""
        dev = device if isinstance(device, torch.device) else resolve_device(device)
        check_precision(precision, dev)
        rank, _, world = env_ranks()
        owns = False
        if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            owns = True
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        rt = cls(dev, rank, world, owns, precision, _tf32_flags())
        set_precision(precision)
        return rt

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of this runtime's precision (None: fp32 / tf32, no autocast)."""
        return PRECISIONS[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast for this runtime's precision on its device: wrap the forward passes in it."""
        return autocast(self.device, self.precision)

    def precision_flags(self) -> contextlib.AbstractContextManager[None]:
        """This runtime's TF32 flags for a block (for a runtime made without :meth:`start`)."""
        return precision_flags(self.precision)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for training: on for fp16 (its gradients underflow), off otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

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
        if self._flags_before is not None:
            _set_tf32_flags(self._flags_before)
            self._flags_before = None

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

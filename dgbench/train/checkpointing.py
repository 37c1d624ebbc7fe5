"""What every trainer's checkpoint/resume shares: atomic writes, the full RNG state, a checked load.

* :func:`atomic_save`: ``torch.save`` to a temporary file beside the target, then ``os.replace``;
  a run killed mid-write leaves the previous checkpoint whole.
* :func:`rng_state` / :func:`set_rng_state`: torch's CPU generator, Python's ``random`` and (when
  CUDA is available) every CUDA device's generator. CUDA's matters on a GPU: dropout and other
  random kernels there draw from it, so a resumed run without it would not repeat the
  uninterrupted one.
* :func:`load_train_checkpoint`: ``weights_only`` load on CPU; a file it cannot read (empty,
  truncated, not a torch file) is one line naming it (:func:`dgbench.models.weights.load_weights_only`).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from ..models.weights import load_weights_only


def rng_state() -> dict[str, Any]:
    """The random state a resumed run needs (plain tensors and ints: loadable with ``weights_only``)."""
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), None))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: a killed run leaves the previous file whole


def load_train_checkpoint(path: Path) -> dict[str, Any]:
    return load_weights_only(path, "training checkpoint")

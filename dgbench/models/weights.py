"""How dgbench loads checkpoints (what they are is data: :mod:`dgbench.models.pretrained`).

:func:`load_pretrained` loads a checkpoint into a model:

* ``pretrained=True``: the weights a :class:`~dgbench.models.pretrained.PretrainedCfg` describes:
  its ``url`` through torch hub's cache (``torch.hub.load_state_dict_from_url(check_hash=True)``;
  the file lands in ``$TORCH_HOME/hub/checkpoints``), or its ``file`` shipped under
  ``dgbench/assets`` (checked against its full ``sha256`` where the config knows it);
* ``pretrained=<path>`` (or ``file://``/``http(s)://`` URL): that checkpoint instead.

Always ``weights_only=True`` (no pickled code runs), always ``strict``: a key that is missing or
unexpected, or a shape that differs, is a one-line :class:`~dgbench.errors.CheckpointError` naming
the first of them and what the checkpoint looks like (:mod:`dgbench.models.state_fit`).
The only keys ever skipped are the classifier's, when the model was built with a different
``num_classes`` than the checkpoint (fine-tuning), and that is said in the model's
``skipped_keys``. The full sha256 of the file is returned, so results can record what ran.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..config import asset_path, offline
from ..errors import CheckpointError
from .pretrained import PretrainedCfg, hash_prefix_of
from .state_fit import describe_state_dict, fit_problems


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_cache_path(url: str) -> Path:
    """Where torch hub keeps (and dgbench looks for) the checkpoint at ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def verify_checkpoint(path: str | os.PathLike, prefix: str | None, origin: str = "") -> str:
    """The sha256 of ``path``; a :class:`CheckpointError` if it does not start with ``prefix``.

    Use after :func:`resolve_checkpoint` when loading by hand (torch hub only checks the hash of
    a fresh download; a file already in the cache is checked here).
    """
    digest = sha256_file(path)
    _check_prefix(Path(path), digest, prefix, origin or str(path))
    return digest


def _check_prefix(path: Path, digest: str, prefix: str | None, origin: str) -> None:
    if prefix and not digest.startswith(prefix):
        raise CheckpointError(
            f"checkpoint {path} has sha256 {digest[:12]}..., expected a hash starting with {prefix!r} "
            f"({origin}); the file is corrupt or not the published one: delete it and retry"
        )


def fetch(url: str, sha256_prefix: str | None = None) -> Path:
    """Download ``url`` into torch hub's cache (hash-checked) unless it is there; return its path."""
    dest = hub_cache_path(url)
    if not dest.is_file():
        if offline():
            raise CheckpointError(
                f"DGBENCH_OFFLINE is set and the checkpoint is not cached. Download {url} "
                f"yourself and place it at {dest}"
            )
        try:
            # Downloads to a temp file, checks the hash prefix in the file name, then moves it in.
            torch.hub.load_state_dict_from_url(
                url, model_dir=str(dest.parent), map_location="cpu", check_hash=True,
                weights_only=True, progress=False,
            )
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise CheckpointError(
                f"could not download {url} ({exc}). Without network, download it elsewhere and "
                f"place it at {dest} (or pass pretrained=<path>)"
            ) from exc
        except RuntimeError as exc:
            if "hash" in str(exc):
                raise CheckpointError(f"refused {url}: {exc}; nothing was kept in {dest.parent}") from exc
            raise CheckpointError(f"could not load {url}: {exc}") from exc
    return dest


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a file it cannot read is one line saying why."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-tensor payloads
        raise CheckpointError(f"cannot read {what} {path} with weights_only=True: {unreadable_reason(exc)}") from exc


def unreadable_reason(exc: Exception) -> str:
    """torch.load's several-paragraph error as the one fact that matters, and what to do about it."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    detail = found.group(1).strip() if found else ""
    pickled = re.search(r"GLOBAL (\S+) was not an allowed global", detail)
    if pickled:
        return (f"it holds a pickled {pickled.group(1)}, which weights_only=True will not run; re-save just the "
                "tensors (torch.save(model.state_dict(), path))")
    if found:
        return f"not a file torch.save wrote ({detail.splitlines()[0]})"
    if isinstance(exc, EOFError) or "central directory" in text:
        return "the file is empty, truncated or damaged (copy it again)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first[:300]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, ``weights_only=True``; unwraps ``{"state_dict": ...}`` /
    ``{"model": ...}`` and a DataParallel ``module.`` prefix."""
    obj = load_weights_only(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state dict of tensors")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str, *,
                           new_head_ok: bool = True) -> list[str]:
    """Load strictly; raise a one-line :class:`CheckpointError` naming the first missing, unexpected
    and mis-shaped keys and what the checkpoint looks like. Every state dict dgbench loads into a
    model goes through here, so a wrong file reads the same wherever it was passed.

    With ``new_head_ok``, classifier keys whose shape differs only because the model has another
    ``num_classes`` are skipped (returned), so a fine-tuning model starts from the published backbone.
    """
    remap = getattr(model, "remap_state_dict", None)
    sd = dict(remap(state_dict) if callable(remap) else state_dict)
    own = model.state_dict()
    head = getattr(model, "head_name", None) if new_head_ok else None
    skipped = [
        k for k in list(sd)
        if head and k.startswith(head + ".") and k in own and own[k].shape != sd[k].shape
    ]
    for k in skipped:
        sd[k] = own[k]
    problems = fit_problems(own, sd)
    if problems:
        name = getattr(model, "dgbench_name", None) or type(model).__name__
        raise CheckpointError(f"checkpoint {origin} does not fit {name}: " + "; ".join(problems)
                              + f". The checkpoint holds {describe_state_dict(state_dict)}")
    model.load_state_dict(sd, strict=True)
    return skipped


def resolve_checkpoint(cfg: PretrainedCfg, pretrained: bool | str | os.PathLike) -> tuple[Path, str | None, str]:
    """(local file, expected sha256 or its prefix, or None; description) for ``pretrained``: ``True``
    for the weights ``cfg`` describes, else a path or URL."""
    if pretrained is True:
        expected = cfg.sha256 or cfg.sha256_prefix
        if cfg.file:
            return asset_path(cfg.file), expected, f"{cfg.full_name or 'the model'}'s shipped file {cfg.file}"
        if cfg.url:
            return fetch(cfg.url, expected), expected, cfg.url
        raise CheckpointError(
            f"{cfg.architecture or 'this model'} has no published weights; pass pretrained=<path to a checkpoint> "
            f"(`dgbench models --pretrained` lists the models that have them)"
        )
    text = os.fspath(pretrained)  # type: ignore[arg-type]
    scheme = urlparse(text).scheme
    if scheme in ("http", "https", "file"):
        prefix = hash_prefix_of(text)
        return fetch(text, prefix), prefix, text
    path = Path(text).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    return path, None, str(path)


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, pretrained: bool | str | os.PathLike) -> str:
    """Load ``pretrained`` into ``model`` (see the module docstring; ``True``: the weights ``cfg``
    describes); return the file's sha256."""
    path, prefix, origin = resolve_checkpoint(cfg, pretrained)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} ({origin}) does not exist")
    digest = verify_checkpoint(path, prefix, origin)
    skipped = load_state_dict_strict(model, read_state_dict(path), str(path))
    model.skipped_keys = skipped  # type: ignore[assignment]
    return digest

"""The checkpoints shipped with the built-in benchmark, registered in one place.

Two folders under ``dgbench/assets/checkpoints/`` (the files stay there; this module names them):
``digits/`` holds every small classifier trained on each digits domain, ``digit-scenes/`` every
small scene DeepLab trained on each scene domain. Each folder's ``manifest.json`` records every
file's sha256 (and its recipe and scores); a file is loaded only if its hash matches (a mismatch
is a :class:`~dgbench.errors.CheckpointError`).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from torch import nn

from ..config import asset_path
from ..errors import CheckpointError, UnknownNameError
from .domains import DIGIT_DOMAINS, SCENE_DOMAINS
from .names import SMALL_MODELS, small_name_for

CHECKPOINT_DIR = ("checkpoints", "digits")  # under dgbench/assets
MANIFEST = "manifest.json"
SCENE_CHECKPOINT_DIR = ("checkpoints", "digit-scenes")  # under dgbench/assets
SCENE_MANIFEST = "manifest.json"
# The shipped checkpoints as weights tags: ``builtin`` (trained on digits, the default) and one
# per other digits domain (``builtin_typeset``: trained on typeset-digits).
TAG_OF_DOMAIN: dict[str, str] = {
    d: "builtin" if d == "digits" else "builtin_" + d.removesuffix("-digits").replace("-", "_") for d in DIGIT_DOMAINS
}


def checkpoint_file(model: str, domain: str) -> str:
    """The shipped checkpoint's path relative to ``dgbench/assets``."""
    return "/".join((*CHECKPOINT_DIR, f"{model}-{domain}.pth"))


def scene_checkpoint_file(model: str, domain: str) -> str:
    """Path, relative to ``dgbench/assets``, of the shipped scene model trained on ``domain``."""
    return "/".join((*SCENE_CHECKPOINT_DIR, f"{model}-{domain}.pth"))


def manifest_path() -> Path:
    return asset_path(*CHECKPOINT_DIR, MANIFEST)


@functools.lru_cache(maxsize=1)
def _manifest_cached(mtime_ns: int) -> dict[str, dict[str, Any]]:
    entries = json.loads(manifest_path().read_text())["checkpoints"]
    return {e["file"]: e for e in entries}


def manifest() -> dict[str, dict[str, Any]]:
    """Shipped checkpoints by file name (``{}`` if the manifest is absent)."""
    path = manifest_path()
    if not path.is_file():
        return {}
    return _manifest_cached(path.stat().st_mtime_ns)


def scene_manifest() -> dict[str, dict[str, Any]]:
    """Shipped scene checkpoints by file name: sha256, training domain, recipe, in-domain mIoU."""
    path = asset_path(*SCENE_CHECKPOINT_DIR, SCENE_MANIFEST)
    if not path.is_file():
        return {}
    return {e["file"]: e for e in json.loads(path.read_text())["checkpoints"]}


def _verify(path: Path, model: str, domain: str) -> str:
    """Check ``path`` against the manifest; return its sha256 or raise :class:`CheckpointError`."""
    from ..models.weights import sha256_file

    entry = manifest().get(path.name)
    if entry is None:
        raise CheckpointError(
            f"no shipped checkpoint for {model} on {domain} ({path.name} is not in {manifest_path()}); "
            "run `dgbench train --reproduce-builtin` to build them"
        )
    if not path.is_file():
        raise CheckpointError(f"shipped checkpoint {path} is missing; reinstall dgbench or run `dgbench train --reproduce-builtin`")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"shipped checkpoint {path} has sha256 {digest[:16]}..., but {manifest_path().name} records "
            f"{entry['sha256'][:16]}...: the file is corrupt or was replaced; reinstall dgbench or "
            "rebuild it with `dgbench train --reproduce-builtin`"
        )
    return digest


def load_builtin(model: str, domain: str = "digits", *, path: str | Path | None = None) -> nn.Module:
    """The small ``model`` (name or alias) trained on ``domain``, verified against the manifest.

    ``path`` loads that file instead of the shipped one but still requires its name and hash to be
    in the manifest (used to check a reproduced or copied checkpoint). The returned model is in
    eval mode and carries ``weights_sha256``, ``weights_tag`` and ``train_domain``.
    """
    from ..models.registry import create_model
    from ..models.weights import load_state_dict_strict, read_state_dict

    if domain not in DIGIT_DOMAINS:
        raise UnknownNameError("digits domain", domain, DIGIT_DOMAINS)
    name = small_name_for(model)
    if name not in SMALL_MODELS:
        raise UnknownNameError("small model", model, SMALL_MODELS)
    file = Path(path) if path is not None else asset_path(checkpoint_file(name, domain))
    if path is not None and file.name != Path(checkpoint_file(name, domain)).name:
        raise CheckpointError(f"{file} is not named like the shipped {name} on {domain} checkpoint")
    digest = _verify(file, name, domain)
    net = create_model(name)
    load_state_dict_strict(net, read_state_dict(file), str(file))
    net.weights_sha256 = digest  # type: ignore[assignment]
    net.weights_tag = TAG_OF_DOMAIN[domain]  # type: ignore[assignment]
    net.train_domain = domain  # type: ignore[assignment]
    return net.eval()


def builtin_scene_checkpoints(model: str) -> dict[str, str]:
    """``{training domain: shipped checkpoint path}`` of a small scene model (may be empty).

    Each file's sha256 is checked against the manifest (a mismatch is a :class:`CheckpointError`).
    """
    import hashlib

    out: dict[str, str] = {}
    entries = scene_manifest()
    for domain in SCENE_DOMAINS:
        rel = scene_checkpoint_file(model, domain)
        entry = entries.get(rel.rsplit("/", 1)[-1])
        if entry is None:
            continue
        path = asset_path(*rel.split("/"))
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if digest != entry["sha256"]:
            raise CheckpointError(f"shipped checkpoint {path} is missing or does not match its manifest sha256")
        out[domain] = str(path)
    return out

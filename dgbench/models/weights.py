"""Published checkpoints and how dgbench loads them.

:data:`PUBLISHED` is the table of released ImageNet weights (URL whose file name carries the
sha256 prefix, as torch hub names them). :func:`load_pretrained` loads a checkpoint into a model:

* ``pretrained=True``: the entry's ``url`` through torch hub's cache
  (``torch.hub.load_state_dict_from_url(check_hash=True)``; the file lands in
  ``$TORCH_HOME/hub/checkpoints``), or the entry's ``file`` shipped under ``dgbench/assets``;
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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..config import asset_path, offline
from ..errors import CheckpointError
from .registry import PretrainedCfg, register_model
from .state_fit import describe_state_dict, fit_problems

if TYPE_CHECKING:
    from .registry import ModelInfo

_IBN = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"
_TV = "https://download.pytorch.org/models/"
_IBN_SOURCE = "XingangPan/IBN-Net v1.0 release (Pan et al., ECCV 2018), ImageNet-1k"
_IBN_LICENSE = "MIT, as stated by github.com/XingangPan/IBN-Net (not re-checked offline)"
_TV_SOURCE = "torchvision IMAGENET1K_V1, ImageNet-1k"
_TV_LICENSE = "BSD-3-Clause (torchvision)"

# Short names of the weights' sources, for listings and tables. The baselines' ImageNet weights
# are torchvision's V1 recipe, not the paper's re-implementation (Table 2: ResNet-50 24.27/7.08
# top-1/top-5 error there, 23.87/7.14 for torchvision's): a measured IBN-vs-baseline gap mixes
# two training recipes, so every table that puts them beside the paper says which weights ran.
SOURCE_LABELS: dict[str, str] = {_TV_SOURCE: "torchvision V1", _IBN_SOURCE: "IBN-Net authors"}


def weights_label(cfg: PretrainedCfg) -> str:
    """Who trained a registered model's default weights: ``torchvision V1``, ``IBN-Net authors``,
    ``dgbench built-in`` (shipped file), or ``none``."""
    if not cfg.has_weights:
        return "none"
    return SOURCE_LABELS.get(cfg.source, "dgbench built-in" if cfg.file else cfg.source)


# model name -> (file name of the release, source, license). The hash prefix is read off the name.
PUBLISHED: dict[str, tuple[str, str, str]] = {
    # The authors' release: every URL of their ibnnet/*.py.
    "resnet18_ibn_a": (_IBN + "resnet18_ibn_a-2f571257.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet34_ibn_a": (_IBN + "resnet34_ibn_a-94bc1577.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet50_ibn_a": (_IBN + "resnet50_ibn_a-d9d0bb7b.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet101_ibn_a": (_IBN + "resnet101_ibn_a-59ea0ac6.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet18_ibn_b": (_IBN + "resnet18_ibn_b-bc2f3c11.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet34_ibn_b": (_IBN + "resnet34_ibn_b-04134c37.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet50_ibn_b": (_IBN + "resnet50_ibn_b-9ca61e85.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnet101_ibn_b": (_IBN + "resnet101_ibn_b-c55f6dba.pth", _IBN_SOURCE, _IBN_LICENSE),
    "resnext101_ibn_a": (_IBN + "resnext101_ibn_a-6ace051d.pth", _IBN_SOURCE, _IBN_LICENSE),
    "se_resnet101_ibn_a": (_IBN + "se_resnet101_ibn_a-fabed4e2.pth", _IBN_SOURCE, _IBN_LICENSE),
    "densenet121_ibn_a": (_IBN + "densenet121_ibn_a-e4af5cc1.pth", _IBN_SOURCE, _IBN_LICENSE),
    "densenet169_ibn_a": (_IBN + "densenet169_ibn_a-9f32c161.pth", _IBN_SOURCE, _IBN_LICENSE),
    # torchvision's baselines (the keys of our baselines are torchvision's).
    "resnet18": (_TV + "resnet18-f37072fd.pth", _TV_SOURCE, _TV_LICENSE),
    "resnet34": (_TV + "resnet34-b627a593.pth", _TV_SOURCE, _TV_LICENSE),
    "resnet50": (_TV + "resnet50-0676ba61.pth", _TV_SOURCE, _TV_LICENSE),
    "resnet101": (_TV + "resnet101-63fe2227.pth", _TV_SOURCE, _TV_LICENSE),
    "resnet152": (_TV + "resnet152-394f9c45.pth", _TV_SOURCE, _TV_LICENSE),
    "resnext50_32x4d": (_TV + "resnext50_32x4d-7cdf4587.pth", _TV_SOURCE, _TV_LICENSE),
    "densenet121": (_TV + "densenet121-a639ec97.pth", _TV_SOURCE, _TV_LICENSE),
    "densenet161": (_TV + "densenet161-8d451a50.pth", _TV_SOURCE, _TV_LICENSE),
    "densenet169": (_TV + "densenet169-b2777c0a.pth", _TV_SOURCE, _TV_LICENSE),
    "densenet201": (_TV + "densenet201-c1103571.pth", _TV_SOURCE, _TV_LICENSE),
}

# torch hub's rule for the hash prefix in a file name: name-<hex>.ext
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def hash_prefix_of(url_or_name: str) -> str | None:
    """The sha256 prefix torch hub reads off a checkpoint's file name, or None."""
    m = _HASH_IN_NAME.search(os.path.basename(urlparse(url_or_name).path or url_or_name))
    return m.group(1) if m else None


def pretrained_cfg_for(name: str, **overrides: Any) -> PretrainedCfg:
    """The pretrained configuration of a zoo model: its published checkpoint, if any.

    ImageNet models all evaluate as released: resize the shorter side to 256 (bilinear), center
    crop 224, ImageNet mean/std.
    """
    entry = PUBLISHED.get(name)
    if entry is None:
        return PretrainedCfg(source="no published weights", **overrides)
    url, source, license_ = entry
    return PretrainedCfg(url=url, sha256_prefix=hash_prefix_of(url), source=source, license=license_, **overrides)



def register_released(fn: Any, *, name: str, family: str, backbone: str, variant: str, doc: str) -> None:
    """Register the zoo constructor ``fn`` as ``name``, with the pretrained config of its release."""
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    register_model(family=family, backbone=backbone, variant=variant, pretrained_cfg=pretrained_cfg_for(name),
                   name=name)(fn)


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


def resolve_checkpoint(info: ModelInfo, pretrained: bool | str | os.PathLike) -> tuple[Path, str | None, str]:
    """(local file, expected sha256 prefix or None, description) for ``pretrained``."""
    cfg = info.pretrained_cfg
    if pretrained is True:
        if cfg.file:
            return asset_path(cfg.file), cfg.sha256_prefix, f"{info.name}'s shipped file {cfg.file}"
        if cfg.url:
            return fetch(cfg.url, cfg.sha256_prefix), cfg.sha256_prefix, cfg.url
        raise CheckpointError(
            f"{info.name} has no published weights; pass pretrained=<path to a checkpoint> "
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


def load_pretrained(model: nn.Module, info: ModelInfo, pretrained: bool | str | os.PathLike) -> str:
    """Load ``pretrained`` into ``model`` (see the module docstring); return the file's sha256."""
    path, prefix, origin = resolve_checkpoint(info, pretrained)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} ({origin}) does not exist")
    digest = verify_checkpoint(path, prefix, origin)
    skipped = load_state_dict_strict(model, read_state_dict(path), str(path))
    model.skipped_keys = skipped  # type: ignore[assignment]
    return digest

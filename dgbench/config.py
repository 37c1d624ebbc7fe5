"""Where dgbench finds things: data roots, the results directory, and its shipped data files.

Each data root resolves as: explicit flag > environment variable > nothing (the caller decides
whether that is an error or a fallback). Resolution is recorded so an error can say where it looked.
"""
from __future__ import annotations

import os
from pathlib import Path

# Environment variables, one per thing a user may point dgbench at.
ENV_VARS = {
    "imagenet": "DGBENCH_IMAGENET",
    "cityscapes": "DGBENCH_CITYSCAPES",
    "gta5": "DGBENCH_GTA5",
    # natural distribution shifts of ImageNet (dgbench.data.natural)
    "imagenet-v2": "DGBENCH_IMAGENET_V2",
    "imagenet-sketch": "DGBENCH_IMAGENET_SKETCH",
    "imagenet-r": "DGBENCH_IMAGENET_R",
    "imagenet-a": "DGBENCH_IMAGENET_A",
    "objectnet": "DGBENCH_OBJECTNET",
    "cue-conflict": "DGBENCH_CUE_CONFLICT",
    # multi-domain sets (dgbench.data.domain_folders.DOMAIN_SETS names each one's variable)
    "pacs": "DGBENCH_PACS",
    "vlcs": "DGBENCH_VLCS",
    "office-home": "DGBENCH_OFFICE_HOME",
    "terra-incognita": "DGBENCH_TERRA_INCOGNITA",
    "domainnet": "DGBENCH_DOMAINNET",
    "results": "DGBENCH_RESULTS",
    "cache": "DGBENCH_CACHE",
    "offline": "DGBENCH_OFFLINE",
}

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root(name: str, flag: str | os.PathLike | None = None) -> Path | None:
    """The root for dataset ``name``: the flag if given, else ``$DGBENCH_<NAME>``, else None."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(ENV_VARS[name])
    return Path(env).expanduser() if env else None


def results_dir(flag: str | os.PathLike | None = None) -> Path:
    """Results directory: ``--results``, else ``$DGBENCH_RESULTS``, else ``./results``.

    A path that exists but is not a folder is refused here, naming where it came from, before any
    work is done (the store would otherwise fail with a traceback when it first writes)."""
    env = os.environ.get(ENV_VARS["results"])
    if flag:
        path, source = Path(flag).expanduser(), "--results"
    elif env:
        path, source = Path(env).expanduser(), f"${ENV_VARS['results']}"
    else:
        path, source = Path("results"), "the default results folder"
    if path.exists() and not path.is_dir():
        from .errors import DgbenchError

        raise DgbenchError(f"{source} {path}: is a file, not a folder; pass a folder for the results "
                           "(created if missing)")
    return path


def cache_dir() -> Path:
    """dgbench's own cache (stylized images etc.): ``$DGBENCH_CACHE`` or ``$XDG_CACHE_HOME/dgbench``."""
    env = os.environ.get(ENV_VARS["cache"])
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "dgbench"


def offline() -> bool:
    """True when ``DGBENCH_OFFLINE`` is set to a true value: never touch the network."""
    return os.environ.get(ENV_VARS["offline"], "").strip().lower() in {"1", "true", "yes", "on"}


def data_dir(name: str) -> Path:
    """A folder of shipped data files: ``transforms`` or ``leaderboards``.

    In a checkout (or an editable install) these are the top-level folders of the repo; in an
    installed wheel they are the packages ``dgbench.transforms`` / ``dgbench.leaderboards``.
    """
    if name not in {"transforms", "leaderboards"}:
        raise ValueError(f"no shipped data folder {name!r}")
    checkout = _REPO_ROOT / name
    if checkout.is_dir() and (_REPO_ROOT / "pyproject.toml").is_file():
        return checkout
    # The wheel maps the folder into the package (see pyproject's package-dir).
    return Path(__file__).resolve().parent / name


def asset_path(*parts: str) -> Path:
    """A file shipped inside the package under ``dgbench/assets`` (checkpoints, synset lists)."""
    return Path(__file__).resolve().parent.joinpath("assets", *parts)

"""Build, and reproduce, the checkpoints that ship with dgbench (every small variant x both domains).

The recipe is :data:`RECIPE` (:data:`dgbench.builtin.recipes.CLASSIFIER_RECIPE`; see
:mod:`.classification` for what each knob does). Building writes
``<model>-<domain>.pth`` and its JSON sidecar per pair plus ``manifest.json`` (file, sha256,
model, dataset, seed, epochs, test accuracy, recipe, versions). Reproducing retrains every pair
into a scratch folder and compares each new file's sha256 with the manifest: bit-exact equality is
expected on the same machine and torch build (one thread, deterministic kernels); where it does
not hold (another CPU, another torch), the report gives the test accuracy of both so the size of
the difference is visible.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..builtin import digits as D
from ..builtin.recipes import CLASSIFIER_RECIPE as RECIPE
from .classification import train_classifier


@dataclass
class Reproduction:
    """One retrained checkpoint compared with the shipped one."""

    file: str
    model: str
    dataset: str
    expected_sha256: str | None
    sha256: str
    shipped_test_acc: float | None
    test_acc: float
    duration_s: float

    @property
    def match(self) -> bool:
        return self.sha256 == self.expected_sha256


def _pairs(models: Sequence[str] | None, domains: Sequence[str] | None) -> list[tuple[str, str]]:
    from ..builtin.names import SMALL_MODELS

    return [(m, d) for d in (domains or D.DOMAINS) for m in (models or SMALL_MODELS)]


def train_pair(model: str, domain: str, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train one shipped pair with :data:`RECIPE` into ``out_dir``; return its manifest entry."""
    from ..builtin.checkpoints import checkpoint_file

    path = out_dir / Path(checkpoint_file(model, domain)).name
    r = train_classifier(model, domain, out=path, progress=progress, **RECIPE)
    return {
        "file": path.name,
        "sha256": r.sha256,
        "model": model,
        "dataset": domain,
        "seed": RECIPE["seed"],
        "epochs": RECIPE["epochs"],
        "test_acc": round(r.metrics["test_acc"], 4),
        "train_acc": round(r.metrics["train_acc"], 4),
        "num_params": r.sidecar_data["num_params"],
        "size_bytes": path.stat().st_size,
        "duration_s": round(r.duration_s, 2),
    }


def build_builtin(
    out_dir: str | os.PathLike,
    *,
    models: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    progress: bool = True,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train every pair into ``out_dir`` and write its ``manifest.json``; return the manifest."""
    from ..results.record import versions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for model, domain in _pairs(models, domains):
        entry = train_pair(model, domain, out, progress=progress)
        entries.append(entry)
        if on_done:
            on_done(entry)
    manifest = {
        "description": "dgbench's shipped digits checkpoints; rebuild with `dgbench train --reproduce-builtin`",
        "recipe": RECIPE,
        "versions": versions(),
        "checkpoints": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def reproduce_builtin(
    out_dir: str | os.PathLike,
    *,
    models: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    progress: bool = True,
    on_done: Callable[[Reproduction], None] | None = None,
) -> list[Reproduction]:
    """Retrain the shipped pairs into ``out_dir`` and compare each with the shipped manifest."""
    from ..builtin.checkpoints import manifest

    shipped = manifest()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for model, domain in _pairs(models, domains):
        entry = train_pair(model, domain, out, progress=progress)
        ref = shipped.get(entry["file"], {})
        rep = Reproduction(
            file=entry["file"], model=model, dataset=domain, expected_sha256=ref.get("sha256"),
            sha256=entry["sha256"], shipped_test_acc=ref.get("test_acc"), test_acc=entry["test_acc"],
            duration_s=entry["duration_s"],
        )
        results.append(rep)
        if on_done:
            on_done(rep)
    return results

"""The built-in scene checkpoints' manifest: what the trainer writes for an entry is what ships."""
from __future__ import annotations

import json
from types import SimpleNamespace

import dgbench.config
from dgbench.builtin.checkpoints import SCENE_CHECKPOINT_DIR, SCENE_MANIFEST, checkpoint_file
from dgbench.builtin.domains import SCENE_DOMAINS
from dgbench.config import asset_path
from dgbench.data.base import build_dataset
from dgbench.train.segmentation import _scene_entry, _write_scene_asset


def _shipped() -> list[dict]:
    return json.loads(asset_path(*SCENE_CHECKPOINT_DIR, SCENE_MANIFEST).read_text())["checkpoints"]


def test_a_shipped_entry_is_recomputed_exactly_from_its_files():
    entry = _shipped()[0]
    weights = asset_path(*SCENE_CHECKPOINT_DIR, entry["file"])
    init = asset_path(checkpoint_file(entry["model"].removeprefix("deeplab_"), SCENE_DOMAINS[entry["domain"]]))
    trained = SimpleNamespace(weights=weights, losses=[entry["final_loss"]])
    test_sets = {d: build_dataset(d, split="test") for d in SCENE_DOMAINS}
    assert _scene_entry(entry["model"], entry["domain"], trained, init, test_sets) == entry


def test_writing_an_asset_copies_the_weights_and_merges_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(dgbench.config, "asset_path", lambda *parts: tmp_path.joinpath(*parts))
    first, second = _shipped()[:2]
    for entry in (second, first, dict(second, final_loss=0.5)):  # a retrained model replaces its entry
        _write_scene_asset(entry, asset_path(*SCENE_CHECKPOINT_DIR, entry["file"]))
    folder = tmp_path.joinpath(*SCENE_CHECKPOINT_DIR)
    written = json.loads((folder / SCENE_MANIFEST).read_text())["checkpoints"]
    assert written == sorted([first, dict(second, final_loss=0.5)], key=lambda e: e["file"])
    assert (folder / first["file"]).read_bytes() == asset_path(*SCENE_CHECKPOINT_DIR, first["file"]).read_bytes()

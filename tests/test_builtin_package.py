"""The built-in benchmark as one package (dgbench.builtin): who imports whom, names decided once,
training data through the dataset registry, and the old import paths."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dgbench.builtin import checkpoints, digit_scenes, digits, domains, names
from dgbench.data.base import build_dataset, indices_sha256, register_dataset
from dgbench.errors import RefusedNameError, UnknownNameError

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    """The dgbench modules a fresh interpreter has imported after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(m for m in sys.modules if m.startswith('dgbench')))"],
        capture_output=True, text=True, cwd=REPO, check=True, env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    return set(out.stdout.split())


def test_the_model_zoo_imports_neither_the_data_nor_the_builtin_package() -> None:
    # Every model module, the old dgbench.models.small path included.
    loaded = _modules_after(
        "import dgbench.models, dgbench.models.small, dgbench.models.deeplab, dgbench.models.weights"
    )
    assert "dgbench.models.deeplab" in loaded
    assert not {m for m in loaded if m.startswith(("dgbench.data", "dgbench.builtin"))}


def test_the_registries_load_the_builtin_package_like_a_plugin() -> None:
    loaded = _modules_after("from dgbench.models import list_models; assert 'small_resnet_ibn_a' in list_models()")
    assert {"dgbench.builtin.small", "dgbench.builtin.scene_models"} <= loaded
    loaded = _modules_after("from dgbench.data.base import list_datasets; assert 'digit-scenes' in list_datasets()")
    assert {"dgbench.builtin.digits", "dgbench.builtin.digit_scenes"} <= loaded


def test_domains_are_declared_once_and_the_spec_files_name_them() -> None:
    from dgbench.protocols.specs import registry

    assert digits.DOMAINS is domains.DIGIT_DOMAINS
    assert digit_scenes.SCENE_DOMAINS is domains.SCENE_DOMAINS
    builtin_pairs = {p.name: p.domains for p in registry().pairs.values() if p.weights == "builtin"}
    assert builtin_pairs == {"digits": domains.DIGIT_DOMAINS, "digit-scenes": tuple(domains.SCENE_DOMAINS)}
    div = registry().protocols["divergence"].params["pairs"]["digits"]
    assert [tuple(p["domains"]) for p in div.values() if "domains" in p] == [domains.DIGIT_DOMAINS]


@pytest.mark.parametrize(("name", "dataset", "expected"), [
    ("ibn_a", "digits", "small_resnet_ibn_a"),
    ("resnet50", "typeset-digits", "small_resnet"),
    ("small_ibn_c", "digits", "small_resnet_ibn_c"),
    ("resnet50_ibn_a", "digits", "resnet50_ibn_a"),  # a full zoo name keeps its meaning
    ("ibn_b", "digit-scenes", "deeplab_small_resnet_ibn_b"),
    ("deeplab_small_resnet_ibn_b", "typeset-digit-scenes", "deeplab_small_resnet_ibn_b"),
    ("ibn_a", "imagenet", None),  # not built in: the zoo's ibn_a
    ("ibn_a", None, None),
])
def test_what_a_name_means_on_builtin_data(name: str, dataset: str | None, expected: str | None) -> None:
    assert names.builtin_model_name(name, dataset) == expected


def test_the_protocols_and_trainers_ask_the_one_rule() -> None:
    from dgbench.protocols.segmentation import builtin_scene_models
    from dgbench.train.classification import resolve_model
    from dgbench.train.segmentation import segmentation_model_name

    assert resolve_model("ibn_a", "digits") == names.builtin_model_name("ibn_a", "digits")
    assert segmentation_model_name("ibn_b", "digit-scenes") == names.builtin_model_name("ibn_b", "digit-scenes")
    assert builtin_scene_models("ibn_b") == [names.builtin_model_name("ibn_b", "digit-scenes")]
    with pytest.raises(RefusedNameError, match="bottleneck"):
        names.builtin_model_name("ibn_a2", "digits")


def test_old_import_paths_forward_to_the_same_objects() -> None:
    from dgbench.data import digit_scenes as old_scenes
    from dgbench.data import digits as old_digits
    from dgbench.models import deeplab as old_deeplab
    from dgbench.models import small as old_small

    assert old_small.load_builtin is checkpoints.load_builtin
    assert old_small.SMALL_MODELS is names.SMALL_MODELS and old_small.small_name_for is names.small_name_for
    assert old_small.CHECKPOINT_DIR == ("checkpoints", "digits") and old_small.WIDTHS == (8, 16, 32, 64)
    assert old_digits.DigitsDataset is digits.DigitsDataset and old_digits.DOMAINS is domains.DIGIT_DOMAINS
    assert old_scenes.DigitScenes is digit_scenes.DigitScenes
    assert old_deeplab.scene_manifest is checkpoints.scene_manifest
    assert old_deeplab.SCENE_ASPP_DILATIONS == (2, 4, 6, 8)
    with pytest.raises(AttributeError, match="no_such_name"):
        old_small.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        old_deeplab.DIGIT_DOMAINS  # noqa: B018  (only the names that moved from it forward)


def test_classification_training_reads_the_registrys_dataset_at_native_size() -> None:
    from dgbench.train.classification import builtin_split

    ds = builtin_split("typeset-digits", "train")
    assert isinstance(ds, digits.DigitsDataset) and ds.images.shape[1:] == (3, 32, 32)
    x, y = digits.digit_tensors("typeset-digits", "train")  # what training read before
    assert torch.equal(ds.images, x) and torch.equal(ds.labels, y)


def test_segmentation_training_builds_any_registered_segmentation_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    from dgbench.data import base
    from dgbench.train.segmentation import SegTrainConfig, build_train_dataset

    base.list_datasets()  # load every dataset first, then register the toy one in a copy
    monkeypatch.setattr(base, "_DATASETS", dict(base._DATASETS))
    monkeypatch.setattr(base, "_TASKS", dict(base._TASKS))

    seen: dict[str, object] = {}

    @register_dataset("toy-seg-for-training", task="segmentation")
    def _toy(root: object = None, *, split: str = "val", preprocess: object = None, **options: object) -> object:
        seen.update(root=root, split=split, **options)
        return ["toy"]

    out = build_train_dataset(SegTrainConfig(dataset="toy-seg-for-training", model="", split="train"), "/r", None, None)
    assert out == ["toy"] and seen == {"root": "/r", "split": "train", "policy": None}
    scenes = build_train_dataset(SegTrainConfig(dataset="digit-scenes", model="", split="train"), None, None, None)
    assert scenes.fingerprint() == build_dataset("digit-scenes", split="train").fingerprint()
    with pytest.raises(UnknownNameError, match="segmentation training dataset 'digits'"):
        build_train_dataset(SegTrainConfig(dataset="digits", model=""), None, None, None)


def test_a_subset_has_one_identity() -> None:
    from dgbench.protocols import finetune
    from dgbench.train import segmentation

    assert finetune.indices_sha256 is indices_sha256 is segmentation._indices_sha256
    # the JSON list of the indices: what the fine-tuning records and training configs store
    assert indices_sha256([3, 1, 2]) == hashlib.sha256(b"[3, 1, 2]").hexdigest()


def test_the_recipes_are_the_ones_the_shipped_manifests_record() -> None:
    import json

    from dgbench.builtin import recipes
    from dgbench.train.builtin import RECIPE
    from dgbench.train.classification import DEFAULT_EPOCHS, DEFAULT_LR

    assert json.loads(checkpoints.manifest_path().read_text())["recipe"] == recipes.CLASSIFIER_RECIPE == RECIPE
    assert (DEFAULT_EPOCHS, DEFAULT_LR) == (RECIPE["epochs"], RECIPE["lr"])
    scenes = list(checkpoints.scene_manifest().values())
    assert {e["model"] for e in scenes} == set(recipes.SCENE_MODELS)
    assert all(e["recipe"] == json.loads(json.dumps(recipes.SCENE_RECIPE)) for e in scenes)

"""Weights with their metadata: several tagged weights per architecture (``name.tag``), the default
tag keeping every record key, the publishers' numbers beside them, and nothing downloaded."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dgbench.builtin.checkpoints import load_builtin, manifest
from dgbench.cli import app
from dgbench.errors import CheckpointError, DgbenchError, UnknownNameError
from dgbench.models import create_model, model_info, registry, resolve_name
from dgbench.models.pretrained import PretrainedCfg
from dgbench.models.resnet import BasicBlock, ResNet
from dgbench.models.weights import sha256_file


def test_published_numbers_are_torchvision_s_own() -> None:
    """Each torchvision tag's file, resize and published accuracy, read back from torchvision's
    Weights enums (the metadata dgbench copies must not drift from its source)."""
    tv = pytest.importorskip("torchvision.models")
    enums = {"resnet18": tv.ResNet18_Weights, "resnet34": tv.ResNet34_Weights, "resnet50": tv.ResNet50_Weights,
             "resnet101": tv.ResNet101_Weights, "resnet152": tv.ResNet152_Weights,
             "resnext50_32x4d": tv.ResNeXt50_32X4D_Weights, "densenet121": tv.DenseNet121_Weights,
             "densenet161": tv.DenseNet161_Weights, "densenet169": tv.DenseNet169_Weights,
             "densenet201": tv.DenseNet201_Weights}
    seen = 0
    for arch, enum in enums.items():
        for cfg in model_info(arch).weights:
            w = enum["IMAGENET1K_V1" if cfg.tag == "tv_in1k" else "IMAGENET1K_V2"]
            acc = w.meta["_metrics"]["ImageNet-1K"]
            assert cfg.url == w.url, arch
            assert cfg.published_metrics == pytest.approx({"top1_err": 100 - acc["acc@1"], "top5_err": 100 - acc["acc@5"]})
            assert [cfg.resize_size] == list(w.transforms().resize_size), (arch, cfg.tag)
            seen += 1
    assert seen == 14  # 10 V1 weights and 4 V2 (resnet50/101/152, resnext50)


def test_every_published_number_says_where_it_is_from() -> None:
    for arch in registry.list_models(pretrained=True):
        for cfg in model_info(arch).weights:
            assert set(cfg.published_metrics) <= {"top1_err", "top5_err"}, cfg.full_name
            assert bool(cfg.published) == bool(cfg.published_source), cfg.full_name
    # The authors' README numbers for their IBN-a release (= the paper's Table 2 IBN-Net-a column).
    assert model_info("resnet50_ibn_a").pretrained_cfg.published_metrics == {"top1_err": 22.54, "top5_err": 6.32}
    assert "README" in model_info("resnet101_ibn_a").pretrained_cfg.published_source
    assert model_info("resnet18_ibn_b").pretrained_cfg.published == ()  # nobody published one


def test_tags_select_weights_and_the_default_keeps_the_bare_name() -> None:
    assert model_info("resnet50").tags == ("tv_in1k", "tv2_in1k") and model_info("resnet50").default_tag == "tv_in1k"
    assert model_info("resnet50_ibn_a").tags == ("authors",)
    assert resolve_name("resnet50.tv_in1k") == "resnet50"  # the default: keyed as before tags existed
    assert resolve_name("resnet50.tv2_in1k") == "resnet50.tv2_in1k"
    assert resolve_name("ibn_a.authors") == "resnet50_ibn_a"  # aliases take tags too
    v2 = model_info("resnet50.tv2_in1k").pretrained_cfg
    assert (v2.tag, v2.file_name, v2.resize_size, v2.architecture) == ("tv2_in1k", "resnet50-11ad3fa6.pth", 232, "resnet50")
    assert create_model("resnet18", weights="tv_in1k").dgbench_name == "resnet18"
    model = create_model("resnet50", weights="tv2_in1k")
    assert model.dgbench_name == "resnet50.tv2_in1k" and model.pretrained_cfg == v2
    assert model.weights_tag is None  # not loaded: random init ran, not the tag's weights


def test_shipped_weights_of_both_domains_are_tags() -> None:
    shipped = manifest()
    typeset = create_model("small_resnet_ibn_a.builtin_typeset", pretrained=True)
    assert typeset.weights_tag == "builtin_typeset" and typeset.dgbench_name == "small_resnet_ibn_a.builtin_typeset"
    assert typeset.weights_sha256 == shipped["small_resnet_ibn_a-typeset-digits.pth"]["sha256"]
    by_domain = load_builtin("small_resnet_ibn_a", "typeset-digits")
    assert by_domain.weights_tag == "builtin_typeset" and by_domain.weights_sha256 == typeset.weights_sha256
    default = create_model("small_resnet_ibn_a", pretrained=True, weights="builtin")
    assert default.dgbench_name == "small_resnet_ibn_a" and default.weights_tag == "builtin"
    assert default.weights_sha256 == create_model("small_resnet_ibn_a", pretrained=True).weights_sha256
    assert default.weights_sha256 == shipped["small_resnet_ibn_a-digits.pth"]["sha256"]
    assert torch.equal(typeset.fc.weight, by_domain.fc.weight) and not torch.equal(typeset.fc.weight, default.fc.weight)
    cfg = model_info("small_resnet_ibn_a.builtin_typeset").pretrained_cfg
    test_acc = shipped["small_resnet_ibn_a-typeset-digits.pth"]["test_acc"]
    assert cfg.sha256 == typeset.weights_sha256 and cfg.published_metrics["top1_err"] == pytest.approx(100 - test_acc)


def test_unknown_or_conflicting_tags_are_one_line() -> None:
    with pytest.raises(UnknownNameError) as exc:
        create_model("resnet50.tv", pretrained=True)
    msg = str(exc.value)
    assert "\n" not in msg and "did you mean resnet50.tv_in1k, resnet50.tv2_in1k?" in msg and "default tv_in1k" in msg
    with pytest.raises(UnknownNameError, match=r"tag 'v2' of resnet50; did you mean resnet50.tv2_in1k\? \(its tags: tv_in1k, tv2_in1k"):
        resolve_name("resnet50.v2")
    with pytest.raises(DgbenchError, match="no released weights, so no tag 'authors'"):
        create_model("resnet50_ibn_c.authors")
    with pytest.raises(DgbenchError, match="give the tag once"):
        create_model("resnet50.tv_in1k", weights="tv2_in1k")
    with pytest.raises(UnknownNameError, match="unknown model 'resnt50'"):
        resolve_name("resnt50.tv_in1k")


def test_a_tag_loads_its_own_file_from_the_hub_cache_never_the_network(tmp_path: Path, monkeypatch) -> None:
    """resnet50.tv2_in1k looks for torchvision's V2 file in torch hub's cache: a file there with
    another hash is refused by the tag's prefix; without one, offline names the V2 URL."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DGBENCH_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="resnet50-11ad3fa6.pth"):
        create_model("resnet50.tv2_in1k", pretrained=True)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, cache / "resnet50-11ad3fa6.pth")
    with pytest.raises(CheckpointError, match="expected a hash starting with '11ad3fa6'"):
        create_model("resnet50", pretrained=True, weights="tv2_in1k")


def _tiny(num_classes: int = 10) -> ResNet:
    return ResNet(BasicBlock, [1, 1], num_classes=num_classes, widths=(8, 16), stem="cifar")


def test_register_several_weights(tmp_path: Path, monkeypatch) -> None:
    """A model registered with two shipped files: tags stamped with the architecture, the first the
    default, each loaded by its own hash; a repeated tag is refused at registration."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr("dgbench.models.weights.asset_path", lambda *parts: tmp_path.joinpath(*parts))
    for tag in ("one", "two"):
        torch.save(_tiny().state_dict(), tmp_path / f"{tag}.pth")
    weights = [PretrainedCfg(file=f"{t}.pth", sha256=sha256_file(tmp_path / f"{t}.pth"), tag=t) for t in ("one", "two")]
    registry.register_model(family="test", backbone="tiny", variant="baseline", name="tagged_tiny",
                            weights=weights)(_tiny)
    info = model_info("tagged_tiny")
    assert info.tags == ("one", "two") and all(w.architecture == "tagged_tiny" for w in info.weights)
    two = create_model("tagged_tiny.two", pretrained=True)
    assert two.weights_tag == "two" and two.weights_sha256 == weights[1].sha256
    assert create_model("tagged_tiny", pretrained=True).weights_sha256 == weights[0].sha256
    with pytest.raises(ValueError, match="each tag once"):
        registry.register_model(family="test", backbone="tiny", variant="baseline", name="twice_tiny",
                                weights=[weights[0], weights[0]])(_tiny)
    # One untagged checkpoint (a plugin's) is the tag "default".
    registry.register_model(family="test", backbone="tiny", variant="baseline", name="plain_tiny",
                            pretrained_cfg=PretrainedCfg(file="one.pth"))(_tiny)
    assert model_info("plain_tiny").tags == (registry.DEFAULT_TAG,)


def test_models_cli_lists_tags_and_their_numbers() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["models", "resnet50", "--format", "csv"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(res.output))}
    assert rows["resnet50"]["tags"] == "tv_in1k tv2_in1k" and rows["resnet50_ibn_a"]["tags"] == "authors"
    res = runner.invoke(app, ["models", "resnet50", "--tags", "--format", "json"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    tags = {r["name"]: r for r in json.loads(res.output)}
    assert set(tags) == {"resnet50.tv_in1k", "resnet50.tv2_in1k", "resnet50_ibn_a.authors", "resnet50_ibn_b.authors"}
    assert tags["resnet50.tv_in1k"]["default"] and not tags["resnet50.tv2_in1k"]["default"]
    assert (tags["resnet50.tv_in1k"]["top1_err"], tags["resnet50.tv2_in1k"]["resize"]) == (23.87, 232)
    assert tags["resnet50_ibn_b.authors"]["published_source"].startswith("IBN-Net paper")
    res = runner.invoke(app, ["models", "small_resnet_ibn_b", "--tags"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "small_resnet_ibn_b.builtin_typeset" in res.output


def test_records_store_the_tag_and_the_default_keeps_its_key(tmp_path: Path) -> None:
    """A run of the default tag has the key of a run without one; another tag is its own model."""
    runner = CliRunner()

    def first_record(model: str) -> dict:
        res = runner.invoke(app, ["run", "--model", model, "--protocol", "appearance-lite", "--dataset", "digits",
                                  "--limit", "20", "--results", str(tmp_path / model), "--no-progress",
                                  "--format", "json"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        return json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))

    bare, default, typeset = (first_record(m) for m in
                              ("small_resnet_ibn_b", "small_resnet_ibn_b.builtin", "small_resnet_ibn_b.builtin_typeset"))
    assert bare["key"] == default["key"] and bare["model"] == default["model"] == "small_resnet_ibn_b"
    assert bare["weights_tag"] == default["weights_tag"] == "builtin"
    assert typeset["model"] == "small_resnet_ibn_b.builtin_typeset" and typeset["weights_tag"] == "builtin_typeset"
    assert typeset["key"] != bare["key"] and typeset["weights_sha256"] != bare["weights_sha256"]

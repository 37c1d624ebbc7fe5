"""The protocol layer: protocols registered one way (TOML kinds and pairs), models from outside the
zoo (import paths, entry points, timm), one runtime for device and ranks, records of schema 1 and 2."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.config import asset_path
from dgbench.errors import DgbenchError
from dgbench.models.small import checkpoint_file
from dgbench.results.store import ResultStore

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    if isinstance(res.exception, DgbenchError):  # dgbench's main() prints these and exits with 2
        return 2, res.output + str(res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_protocols_lists_every_kind_with_its_datasets() -> None:
    code, out = run("protocols", "--format", "json")
    assert code == 0, out
    by = {p["name"]: p for p in json.loads(out)}
    assert by["appearance"]["kind"] == "appearance" and "monet" in by["appearance"]["conditions"]
    assert "digits" in by["appearance"]["datasets"] and "imagenet" in by["appearance"]["datasets"]
    cross = by["cross-domain"]
    assert cross["kind"] == "cross-domain"
    assert cross["datasets"] == ["digits", "digit-scenes", "cityscapes-gta5"]
    assert "cityscapes <-> gta5" in cross["conditions"]
    code, out = run("protocols")
    assert code == 0 and "cross-domain" in out and "sweep-rgb" in out


USER_SPECS = """
[shifts."g+30"]
kind = "add"
channels = "g"
value = 30
units = "pixel intensity on the 0..255 scale, added to G only"
formula = "p'_G = p_G + 30"

[protocols.green]
description = "origin and a green cast"
shifts = ["origin", "g+30"]

[pairs.typeset-first]
task = "classification"
domains = ["typeset-digits", "digits"]
weights = "checkpoints"
split = "test"

[protocols.typeset-first-cross]
kind = "cross-domain"
pairs = ["typeset-first"]
"""


def test_a_toml_folder_adds_a_pair_and_an_appearance_protocol_run_from_the_cli(tmp_path: Path, monkeypatch) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mine.toml").write_text(USER_SPECS)
    monkeypatch.setenv("DGBENCH_TRANSFORMS", str(specs))
    res = str(tmp_path / "results")
    code, out = run("run", "--model", "ibn_b", "--protocol", "green", "--dataset", "digits", "--results", res,
                    "--no-progress", "--format", "json")
    assert code == 0, out
    recs = _json_lines(out)
    assert [r["shift"] for r in recs] == ["origin", "g+30"]
    assert recs[1]["shift_spec"]["params"] == {"channels": "g", "value": 30} and recs[1]["reference"] == "origin"
    assert recs[1]["model"] == "small_resnet_ibn_b"
    # The user's pair with the shipped checkpoints as files gives exactly the built-in pair's cells.
    ckpt = {d: str(asset_path(checkpoint_file("small_resnet", d))) for d in ("digits", "typeset-digits")}
    code, out = run("run", "--model", "small_resnet", "--protocol", "typeset-first-cross", "--checkpoint-a",
                    ckpt["typeset-digits"], "--checkpoint-b", ckpt["digits"], "--results", res, "--no-progress",
                    "--format", "json")
    assert code == 0, out
    mine = {(r["train_domain"], r["test_domain"]): r for r in _json_lines(out)}
    assert list(mine) == [("typeset-digits", "typeset-digits"), ("typeset-digits", "digits"), ("digits", "digits"),
                          ("digits", "typeset-digits")]  # the pair's first domain first
    code, out = run("run", "--model", "small_resnet", "--protocol", "cross-domain", "--dataset", "digits",
                    "--results", res, "--no-progress", "--format", "json")
    assert code == 0, out
    builtin = {(r["train_domain"], r["test_domain"]): r for r in _json_lines(out)}
    for cell, rec in mine.items():
        assert rec["metrics"] == builtin[cell]["metrics"], cell
        assert rec["weights_sha256"] == builtin[cell]["weights_sha256"]
    assert mine[("digits", "typeset-digits")]["weights_source"] == ckpt["digits"]
    # A pair naming an unknown field is refused with the file and the field.
    (specs / "bad.toml").write_text('[pairs.x]\ntask = "classification"\ndomains = ["digits", "typeset-digits"]\nweight = "builtin"\n')
    code, out = run("protocols")
    assert code == 2 and "bad.toml: pairs.x.weight: unknown field" in " ".join(out.split()), out


def test_model_from_an_import_path_with_kwargs_is_fingerprinted(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from dgbench.models.registry import PretrainedCfg
        from dgbench.data.digits import MEAN, STD

        pretrained_cfg = PretrainedCfg(input_size=(3, 32, 32), crop_pct=1.0, mean=MEAN, std=STD, num_classes=10)

        def build_net(width=4):
            torch.manual_seed(width)
            return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    res = str(tmp_path / "results")
    args = ["run", "--model", "userpkg.nets:build_net", "--protocol", "appearance-lite", "--dataset", "digits",
            "--limit", "40", "--results", res, "--no-progress", "--format", "json"]
    code, out = run(*args, "--model-kwargs", '{"width": 6}')
    assert code == 0, out
    recs = _json_lines(out)
    assert len(recs) == 4 and {r["model"] for r in recs} == {"userpkg.nets:build_net"}
    assert recs[0]["model_kwargs"] == {"width": 6} and len(recs[0]["weights_sha256"]) == 64
    assert recs[0]["preprocessing"]["crop_size"] == 32
    code, out = run(*args, "--model-kwargs", '{"width": 6}')
    assert code == 0 and all(r["key"] in {x["key"] for x in recs} for r in _json_lines(out))
    code, out = run(*args, "--model-kwargs", '{"width": 5}')  # other kwargs: other weights, other keys
    assert code == 0 and not {r["key"] for r in _json_lines(out)} & {r["key"] for r in recs}
    code, out = run(*args, "--model-kwargs", '{"width": ')
    assert code == 2 and "--model-kwargs" in out and "not valid JSON" in out
    code, out = run(*args[:2], "userpkg.nets:nope", *args[3:])
    assert code == 2 and "has no attribute 'nope'" in out


def _fake_dist(site: Path, name: str, entry_points: str, files: dict[str, str]) -> None:
    """A package installed the way pip leaves it: its module and a .dist-info with entry points."""
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(textwrap.dedent(text))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_an_installed_package_registers_a_model_through_an_entry_point(tmp_path: Path, monkeypatch) -> None:
    from dgbench import plugins

    site = tmp_path / "site"
    _fake_dist(site, "dgbench_extra", """
        [dgbench.models]
        extra = dgbench_extra.models
    """, {"dgbench_extra/__init__.py": "", "dgbench_extra/models.py": '''
        from dgbench.data.digits import MEAN, STD
        from dgbench.models.registry import PretrainedCfg, register_model
        from dgbench.models.small import LAYERS, WIDTHS
        from dgbench.models.resnet import BasicBlock, ResNet

        @register_model(family="extra", backbone="tiny", variant="baseline", name="extra_tiny_resnet",
                        pretrained_cfg=PretrainedCfg(input_size=(3, 32, 32), crop_pct=1.0, mean=MEAN, std=STD,
                                                     num_classes=10))
        def extra_tiny_resnet(num_classes=10, **kw):
            """A plugin's model."""
            return ResNet(BasicBlock, LAYERS, num_classes=num_classes, widths=WIDTHS, stem="cifar", **kw)
    '''})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_loaded", set())
    res = str(tmp_path / "results")
    code, out = run("run", "--model", "extra_tiny_resnet", "--no-pretrained", "--protocol", "appearance-lite",
                    "--dataset", "digits", "--limit", "20", "--results", res, "--no-progress", "--format", "json")
    assert code == 0, out
    recs = _json_lines(out)
    assert len(recs) == 4 and recs[0]["model"] == "extra_tiny_resnet" and recs[0]["seed"] == 0
    code, out = run("models", "extra_*")
    assert code == 0 and "extra_tiny_resnet" in out


def test_a_broken_plugin_is_one_error_naming_the_package(tmp_path: Path, monkeypatch) -> None:
    from dgbench import plugins

    site = tmp_path / "site"
    _fake_dist(site, "broken_ext", "[dgbench.models]\nbroken = broken_ext.models\n",
               {"broken_ext/__init__.py": "", "broken_ext/models.py": "import no_such_module_here\n"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_loaded", set())
    with pytest.raises(plugins.PluginError, match=r"package 'broken_ext 1.0': entry point broken = 'broken_ext.models'.*No module named 'no_such_module_here'"):
        plugins.load_group("dgbench.models")


def test_timm_models_take_timm_s_preprocessing(monkeypatch) -> None:
    """timm is optional; a stand-in module with timm's API checks the adapter (config, tags)."""
    import types

    from dgbench.models.external import create_external

    made = {}

    def create_model(name, pretrained=False, **kw):
        made.update(name=name, pretrained=pretrained, **kw)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 7))
        net.pretrained_cfg = {"input_size": (3, 288, 288), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                              "crop_pct": 0.9, "interpolation": "bicubic", "num_classes": 7, "hf_hub_id": "timm/x"}
        return net

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    net = create_external("timm/convnext_tiny", pretrained=True, kwargs={"drop_rate": 0.1})
    assert made == {"name": "convnext_tiny", "pretrained": True, "drop_rate": 0.1}
    cfg = net.pretrained_cfg
    assert (cfg.input_size, cfg.mean, cfg.interpolation, cfg.num_classes) == ((3, 288, 288), (0.5,) * 3, "bicubic", 7)
    assert cfg.resize_size == 320 and net.dgbench_name == "timm/convnext_tiny"
    assert net.weights_sha256 is not None and len(net.weights_sha256) == 64


def test_device_rules_under_torchrun(monkeypatch) -> None:
    from dgbench import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for flag in ("auto", "cuda"):
        with pytest.raises(DgbenchError, match="2 ranks on this node but 1 GPU"):
            runtime.resolve_device(flag)
    with pytest.raises(DgbenchError, match="every rank needs its own GPU"):
        runtime.resolve_device("cuda:0")
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert runtime.resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(DgbenchError, match="has 1 GPU"):
        runtime.resolve_device("cuda:3")


def test_cuda_asked_for_without_cuda_is_one_line_naming_the_fix(monkeypatch) -> None:
    from dgbench import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DgbenchError, match=r"--device cuda: CUDA is not available on this machine \(use --device cpu\)"):
        runtime.resolve_device("cuda")
    assert runtime.resolve_device("auto") == torch.device("cpu")


def test_fp32_means_no_tf32_and_tf32_is_its_own_precision() -> None:
    from dgbench.runtime import set_precision

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        set_precision("tf32")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        set_precision("fp32")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        with pytest.raises(DgbenchError, match="unknown precision 'fp64'"):
            set_precision("fp64")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_corrupt_image_in_a_worker_is_one_line(tmp_path: Path, monkeypatch) -> None:
    from appearance_fixtures import env_isolated, folder_tree

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 0, 1])
    bad = root / "n01443537" / "ILSVRC2012_val_00000009.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code, out = run("run", "--model", "resnet18", "--no-pretrained", "--protocol", "appearance-lite", "--data",
                    str(root), "--workers", "1", "--no-progress")
    text = " ".join(out.split())
    assert code == 2 and "ILSVRC2012_val_00000009.JPEG" in text and "--skip-corrupt" in text
    assert "Traceback" not in out and "worker process" not in out


def test_code_identity_is_part_of_the_key_and_old_records_still_load(tmp_path: Path, monkeypatch) -> None:
    from dgbench.results import record

    rec = record.new_record(task="classification", protocol="p", model="m", metrics={"top1_err": 1.0})
    assert rec["code"] == record.code_identity() and rec["schema_version"] == 2
    monkeypatch.setattr(record, "NUMERICS_VERSION", record.NUMERICS_VERSION + 1)
    again = record.new_record(task="classification", protocol="p", model="m", metrics={"top1_err": 1.0})
    assert again["key"] != rec["key"]  # newer numerics: the stored result is not reused
    v1 = {"schema_version": 1, "key": "k1", "protocol": "cross-domain", "task": "segmentation",
          "metrics": {"miou": 50.0, "pixel_acc": 90.0, "per_class_iou": {"road": 97.0}},
          "drop": {}, "train_domain": "a", "test_domain": "a"}
    (tmp_path / "cross-domain.jsonl").write_text(json.dumps(v1) + "\n")
    (loaded,) = ResultStore(tmp_path).records("cross-domain")
    assert loaded["metrics"] == {"miou": 50.0, "pixel_acc": 90.0} and loaded["per_class_iou"] == {"road": 97.0}
    assert loaded["key"] == "k1" and loaded["schema_version"] == 2

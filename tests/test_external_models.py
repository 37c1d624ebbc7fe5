"""Models from outside the zoo, with the real libraries: torchvision import paths and timm models
build, run and store records; their failures (a raising function, bad --model-kwargs, a classifier
that does not fit the dataset, pretrained timm weights without network) are one line, nothing stored."""
from __future__ import annotations

import json
import os
import socket
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from dgbench.errors import DgbenchError
from dgbench.models.external import create_external, state_dict_sha256
from test_protocol_layer import _json_lines, run

FAST = ["--protocol", "appearance-lite", "--dataset", "digits", "--limit", "4", "--batch-size", "4", "--workers", "0",
        "--no-progress", "--format", "json"]


def _stored(results: Path) -> list[dict]:
    return [json.loads(line) for f in results.glob("*.jsonl") for line in f.read_text().splitlines() if line.strip()]


def _one_line_refusal(code: int, out: str, results: Path, *needles: str) -> None:
    """Exit 2 with dgbench's one-line message holding every needle, and no record stored."""
    assert code == 2, out
    message = out.strip().splitlines()[-1]
    assert all(n in message for n in needles), message
    assert "Traceback" not in out and _stored(results) == []


def test_a_batchnorm_network_is_fingerprinted_with_its_0_dim_buffers() -> None:
    """BatchNorm's num_batches_tracked is a 0-dim int64 tensor; it is hashed as the rest are."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    digest = state_dict_sha256(net)
    assert digest is not None and len(digest) == 64
    net[1].num_batches_tracked += 1  # the buffer's value is part of the identity
    assert state_dict_sha256(net) != digest


@pytest.mark.parametrize("model", ["torchvision.models:resnet18", "timm/resnet18"])
def test_torchvision_and_timm_models_run_and_store_records(model: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    code, out = run("run", "--model", model, "--model-kwargs", '{"num_classes": 10}', "--no-pretrained",
                    *FAST, "--results", str(results))
    assert code == 0, out
    recs = _json_lines(out)
    assert [r["shift"] for r in recs] == ["origin", "rgb+50", "r+50", "std-x1.5"]
    assert {r["model"] for r in recs} == {model} and recs[0]["model_kwargs"] == {"num_classes": 10}
    assert len(recs[0]["weights_sha256"]) == 64 and recs[0]["num_samples"] == 4
    assert sorted(r["key"] for r in _stored(results)) == sorted(r["key"] for r in recs)


def test_a_classifier_that_does_not_fit_the_dataset_is_refused(tmp_path: Path) -> None:
    """1000 outputs on the 10 digit classes: refused before anything is measured, outside models
    (whose class count a forward pass shows) as zoo models (whose config says it)."""
    results = tmp_path / "results"
    for model in ("torchvision.models:resnet18", "resnet18"):
        code, out = run("run", "--model", model, "--no-pretrained", *FAST, "--results", str(results))
        _one_line_refusal(code, out, results, f"--model {model} scores 1000 classes but digits has 10", '"num_classes": 10')
    # Among several models it is skipped, and when every one is, the run is refused too.
    code, out = run("run", "--model", "torchvision.models:resnet18,resnet18", "--no-pretrained", *FAST, "--results", str(results))
    _one_line_refusal(code, out, results, "no model asked for scores the digits classes", "torchvision.models:resnet18, resnet18")


def test_the_class_count_of_an_outside_model_is_read_without_changing_it() -> None:
    from dgbench.models.external import count_outputs

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert count_outputs(net, (3, 16, 16), "x:y") == 7
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_an_outside_model_that_fits_is_kept_among_several(tmp_path: Path) -> None:
    """Its config says 1000 classes (a guess); its output says 10, so it is measured, not skipped."""
    results = tmp_path / "results"
    code, out = run("run", "--model", "torchvision.models:resnet18,ibn_a", "--model-kwargs", '{"num_classes": 10}',
                    "--no-pretrained", *FAST, "--shifts", "origin", "--results", str(results))
    assert code == 0, out
    assert [r["model"] for r in _json_lines(out)] == ["torchvision.models:resnet18", "small_resnet_ibn_a"]


def _user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "usernets.py").write_text(textwrap.dedent('''
        from torch import nn

        def broken(width=4):
            raise ValueError(f"width {width} is not supported")

        def not_a_classifier():
            return nn.Conv2d(3, 10, 3)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_user_function_that_raises_or_gives_no_logits_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_module(tmp_path, monkeypatch)
    results = tmp_path / "results"
    code, out = run("run", "--model", "usernets:broken", "--model-kwargs", '{"width": 7}', *FAST, "--results", str(results))
    _one_line_refusal(code, out, results, "--model usernets:broken", 'broken(**{"width": 7}) raised ValueError: width 7 is not supported')
    code, out = run("run", "--model", "usernets:not_a_classifier", *FAST, "--results", str(results))
    _one_line_refusal(code, out, results, "gives a tensor of shape (1, 10, 222, 222)", "not [batch, classes] logits")


def test_bad_model_kwargs_on_a_zoo_model_name_the_keyword_and_the_accepted_ones(tmp_path: Path) -> None:
    results = tmp_path / "results"
    code, out = run("run", "--model", "ibn_a", "--model-kwargs", '{"nope": 1}', *FAST, "--results", str(results))
    _one_line_refusal(code, out, results, "--model small_resnet_ibn_a", "no keyword 'nope'", "accepts:", "ibn_ratio")
    code, out = run("run", "--model", "ibn_a", "--model-kwargs", '{"ibn_ration": 0.25}', *FAST, "--results", str(results))
    _one_line_refusal(code, out, results, "no keyword 'ibn_ration'; did you mean 'ibn_ratio'")
    code, out = run("run", "--model", "ibn_a", "--model-kwargs", '{"variant": "b"}', *FAST, "--results", str(results))
    _one_line_refusal(code, out, results, "'variant' is fixed by the model's name")
    with pytest.raises(TypeError, match="drop_rate"):  # Python callers still get a TypeError
        from dgbench.models import create_model

        create_model("densenet121_ibn_a", drop=0.1)


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache of our own (the hub reads its location at import)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def _timm_offline_refusal(why: str) -> None:
    import timm  # noqa: F401  (imported first: the 5 s are for dgbench's part, not timm's import)
    from huggingface_hub import constants

    t0 = time.perf_counter()
    with pytest.raises(DgbenchError) as err:
        create_external("timm/resnet18", pretrained=True)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg and "--model timm/resnet18: its pretrained weights are not in the local cache" in msg
    assert why in msg and "--no-pretrained" in msg
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ  # restored


def test_timm_pretrained_under_dgbench_offline_is_one_line_within_5_s(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGBENCH_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("DGBENCH_OFFLINE: nothing may connect"))
    _timm_offline_refusal("DGBENCH_OFFLINE is set")


def test_timm_pretrained_without_network_is_one_line_within_5_s(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    _timm_offline_refusal("cannot reach huggingface.co")


def test_timm_pretrained_offline_loads_weights_already_in_the_cache(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode is the hub's own: a cached checkpoint loads, and its weights are the ones used."""
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        reference.fc.bias.fill_(0.25)
    repo_id = reference.pretrained_cfg["hf_hub_id"]
    repo = empty_hub_cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(repo / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setenv("DGBENCH_OFFLINE", "1")
    net = create_external("timm/resnet18", pretrained=True)
    assert torch.equal(net.fc.bias, torch.full((1000,), 0.25))
    assert net.weights_sha256 == state_dict_sha256(reference)

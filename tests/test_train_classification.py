"""The digits trainer: the loss falls, runs are bit-reproducible, the sidecar tells the whole story."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from dgbench.data.digits import DigitsDataset
from dgbench.errors import DgbenchError
from dgbench.train import builtin
from dgbench.train.classification import resolve_model, train_classifier


def test_loss_falls_in_a_few_steps():
    r = train_classifier("small_resnet", "digits", max_steps=40, progress=False)
    assert len(r.losses) == 40
    first, last = sum(r.losses[:5]) / 5, sum(r.losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(max_steps=4, progress=False)
    a = train_classifier("ibn_b", "typeset-digits", out=tmp_path / "a" / "m.pth", **kw)
    b = train_classifier("ibn_b", "typeset-digits", out=tmp_path / "b" / "other-name.pth", **kw)
    c = train_classifier("ibn_b", "typeset-digits", out=tmp_path / "c" / "m.pth", seed=1, **kw)
    assert a.sha256 == b.sha256  # the file name does not enter the bytes
    assert (tmp_path / "a" / "m.pth").read_bytes() == (tmp_path / "b" / "other-name.pth").read_bytes()
    assert c.sha256 != a.sha256


def test_training_restores_global_torch_state():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    train_classifier("small_resnet", "digits", max_steps=1, progress=False, num_threads=1)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det


def test_sidecar_records_config_fingerprint_metrics_and_hash(tmp_path):
    import hashlib

    r = train_classifier("ibn_a", "digits", max_steps=3, progress=False, out=tmp_path / "x.pth", seed=3)
    side = json.loads((tmp_path / "x.json").read_text())
    assert side["model"] == "small_resnet_ibn_a" and side["dataset"] == "digits" and side["seed"] == 3
    assert side["config"]["max_steps"] == 3 and side["config"]["num_threads"] == 1
    assert side["data_fingerprint"]["train"] == DigitsDataset("digits", "train").fingerprint()
    assert side["sha256"] == hashlib.sha256((tmp_path / "x.pth").read_bytes()).hexdigest() == r.sha256
    assert set(side["metrics"]) >= {"test_acc", "train_acc", "final_loss"}
    # The checkpoint is a plain state_dict, loadable with weights_only=True.
    sd = torch.load(tmp_path / "x.pth", map_location="cpu", weights_only=True)
    assert set(sd) == set(r.model.state_dict())


def test_aliases_mean_the_small_variant_on_builtin_digits():
    assert resolve_model("ibn_a", "digits") == "small_resnet_ibn_a"
    assert resolve_model("ibn_ad", "typeset-digits") == "small_resnet_ibn_ad"
    assert resolve_model("resnet50", "digits") == "small_resnet"
    assert resolve_model("baseline", "digits") == "small_resnet"
    assert resolve_model("small_ibn_c", "digits") == "small_resnet_ibn_c"
    assert resolve_model("resnet50_ibn_a", "digits") == "resnet50_ibn_a"  # full names as they are
    assert resolve_model("ibn_a", "imagenet") == "resnet50_ibn_a"


def test_only_builtin_domains_are_trained():
    with pytest.raises(DgbenchError, match="built-in domains"):
        train_classifier("ibn_a", "imagenet", max_steps=1, progress=False)


def test_cli_trains_and_writes_checkpoint(tmp_path):
    from dgbench.cli import app

    out = tmp_path / "ck.pth"
    res = CliRunner().invoke(app, ["train", "--dataset", "typeset-digits", "--model", "ibn_b", "--epochs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "small_resnet_ibn_b" in res.output and "test accuracy" in res.output
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_reproduction_report_compares_with_the_manifest(tmp_path, monkeypatch):
    # A one-epoch recipe cannot give the shipped 15-epoch bytes: the report must say so and show
    # both accuracies. (The full reproduction is `dgbench train --reproduce-builtin`.)
    monkeypatch.setitem(builtin.RECIPE, "epochs", 1)
    (rep,) = builtin.reproduce_builtin(tmp_path, models=["small_resnet_ibn_b"], domains=["digits"], progress=False)
    assert rep.file == "small_resnet_ibn_b-digits.pth"
    assert rep.expected_sha256 is not None and not rep.match
    assert rep.shipped_test_acc is not None and 0 <= rep.test_acc <= 100

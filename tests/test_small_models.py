"""Small digit ResNets: built from the zoo's ResNet with its IN placement; shipped checkpoints verified."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
from torch import nn

from dgbench.config import asset_path
from dgbench.data import digits as D
from dgbench.errors import CheckpointError
from dgbench.models import create_model, list_models, model_info
from dgbench.models.ibn import IBN, IBNCat, PartialIN
from dgbench.models.resnet import ResNet
from dgbench.models.small import SMALL_MODELS, WIDTHS, checkpoint_file, load_builtin, manifest, manifest_path



def _norm_layout(model: nn.Module) -> dict[str, str]:
    """Every norm position -> a short description: BN8, IN8, IBN4+4 (IN channels + BN channels),
    CAT8 (IN and BN of all 8 channels, concatenated), PIN4/8 (IN on 4 of 8 channels)."""
    out: dict[str, str] = {}
    for name, m in model.named_modules():
        if name.rsplit(".", 1)[0] in out:  # the IN/BN halves inside an IBN or IBNCat
            continue
        if isinstance(m, IBN):
            out[name] = f"IBN{m.n_in}+{m.n_bn}"
        elif isinstance(m, IBNCat):
            out[name] = f"CAT{m.BN.num_features}"
        elif isinstance(m, PartialIN):
            out[name] = f"PIN{m.num_features}/{m.planes}"
        elif isinstance(m, nn.InstanceNorm2d):
            out[name] = f"IN{m.num_features}"
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = f"BN{m.num_features}"
    return out


# The expected layouts, written out (widths 8-16-32-64, one BasicBlock per group, projection
# shortcuts in groups 2-4): independent of dgbench.models.ibn, so a wrong placement rule fails.
_BASELINE = {
    "bn1": "BN8",
    "layer1.0.bn1": "BN8", "layer1.0.bn2": "BN8",
    "layer2.0.bn1": "BN16", "layer2.0.bn2": "BN16", "layer2.0.downsample.1": "BN16",
    "layer3.0.bn1": "BN32", "layer3.0.bn2": "BN32", "layer3.0.downsample.1": "BN32",
    "layer4.0.bn1": "BN64", "layer4.0.bn2": "BN64", "layer4.0.downsample.1": "BN64",
}
_A = {"layer1.0.bn1": "IBN4+4", "layer2.0.bn1": "IBN8+8", "layer3.0.bn1": "IBN16+16"}
_D = {"bn1": "IBN4+4", "layer1.0.IN": "PIN4/8", "layer2.0.IN": "PIN8/16"}
EXPECTED_LAYOUT = {
    "small_resnet": _BASELINE,
    "small_resnet_ibn_a": {**_BASELINE, **_A},
    "small_resnet_ibn_b": {**_BASELINE, "bn1": "IN8", "layer1.0.IN": "IN8", "layer2.0.IN": "IN16"},
    "small_resnet_ibn_c": {**_BASELINE, "layer1.0.bn1": "CAT8", "layer2.0.bn1": "CAT16", "layer3.0.bn1": "CAT32"},
    "small_resnet_ibn_d": {**_BASELINE, **_D},
    "small_resnet_ibn_ad": {**_BASELINE, **_A, **_D},
}


def test_six_small_variants_registered():
    assert sorted(list_models("small_resnet*")) == sorted(SMALL_MODELS)
    assert sorted(SMALL_MODELS) == sorted(EXPECTED_LAYOUT)  # no a2: it needs a bottleneck
    for name in SMALL_MODELS:
        info = model_info(name)
        assert info.family == "small" and info.task == "classification"
        cfg = info.pretrained_cfg
        assert cfg.input_size == (3, 32, 32) and cfg.num_classes == 10 and cfg.resize_size == 32
        assert cfg.mean == D.MEAN and cfg.std == D.STD


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_built_from_the_zoo_with_its_in_placement(name):
    m = create_model(name).eval()
    # Cifar stem: 3x3 stride-1 conv without bias, no max-pool.
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and m.conv1.bias is None
    assert isinstance(m.maxpool, nn.Identity)
    assert isinstance(m, ResNet)
    assert _norm_layout(m) == EXPECTED_LAYOUT[name]
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_in_placement_follows_the_paper_rules():
    a = create_model("small_resnet_ibn_a")
    assert all(isinstance(getattr(a, f"layer{g}")[0].bn1, IBN) for g in (1, 2, 3))
    assert isinstance(a.layer4[0].bn1, nn.BatchNorm2d)
    b = create_model("small_resnet_ibn_b")
    assert isinstance(b.bn1, nn.InstanceNorm2d)
    assert isinstance(b.layer1[0].IN, nn.InstanceNorm2d) and isinstance(b.layer2[0].IN, nn.InstanceNorm2d)
    assert b.layer3[0].IN is None and b.layer4[0].IN is None
    c = create_model("small_resnet_ibn_c")
    assert isinstance(c.layer1[0].bn1, IBNCat) and c.layer1[0].conv2.in_channels == 2 * WIDTHS[0]
    d = create_model("small_resnet_ibn_d")
    assert isinstance(d.bn1, IBN) and isinstance(d.layer1[0].IN, PartialIN)
    base = create_model("small_resnet")
    assert not any(isinstance(mod, nn.InstanceNorm2d) for mod in base.modules())


def test_ibn_b_is_invariant_to_scaling_the_normalized_input():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    b = create_model("small_resnet_ibn_b").eval()
    with torch.no_grad():
        assert torch.allclose(b(1.5 * x), b(x), rtol=1e-4, atol=1e-4)
        base = create_model("small_resnet").eval()
        assert not torch.allclose(base(1.5 * x), base(x), rtol=1e-4, atol=1e-4)


def test_every_shipped_checkpoint_matches_its_manifest_and_is_small():
    entries = manifest()
    assert len(entries) == 12
    assert {(e["model"], e["dataset"]) for e in entries.values()} == {(m, d) for m in SMALL_MODELS for d in D.DOMAINS}
    for file, e in entries.items():
        path = manifest_path().parent / file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"], file
        assert path.stat().st_size < 500_000
        assert file == checkpoint_file(e["model"], e["dataset"]).split("/")[-1]


@pytest.mark.parametrize("domain", D.DOMAINS)
def test_shipped_checkpoints_load_and_score_as_recorded(domain):
    x, y = D.digit_tensors(domain, "test")
    x = D.normalize(x)
    for name in SMALL_MODELS:
        m = load_builtin(name, domain)
        with torch.no_grad():
            acc = 100.0 * float((m(x).argmax(1) == y).float().mean())
        entry = manifest()[f"{name}-{domain}.pth"]
        assert abs(acc - entry["test_acc"]) < 1e-3, (name, domain, acc, entry["test_acc"])
        assert m.weights_sha256 == entry["sha256"]


def test_pretrained_true_loads_the_digits_checkpoint():
    m = create_model("small_resnet_ibn_a", pretrained=True)
    ref = load_builtin("ibn_a", "digits")
    assert m.weights_sha256 == ref.weights_sha256
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m.state_dict()[k])


def test_a_corrupted_checkpoint_is_refused(tmp_path, monkeypatch):
    name = "small_resnet_ibn_b"
    src = asset_path(checkpoint_file(name, "digits"))
    bad = tmp_path / src.name
    shutil.copy(src, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight tensor
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_builtin(name, "digits", path=bad)
    # The same through the registry's pretrained=True path (the zoo's weight loader).
    (tmp_path / "checkpoints" / "digits").mkdir(parents=True)
    shutil.copy(bad, tmp_path / checkpoint_file(name, "digits"))
    import dgbench.models.weights as W

    monkeypatch.setattr(W, "asset_path", lambda *parts: tmp_path.joinpath(*parts))
    with pytest.raises(CheckpointError, match="corrupt"):
        create_model(name, pretrained=True)


def test_an_unlisted_file_is_refused(tmp_path):
    other = tmp_path / "small_resnet_ibn_b-typeset-digits.pth"
    shutil.copy(asset_path(checkpoint_file("small_resnet_ibn_b", "digits")), other)
    with pytest.raises(CheckpointError):
        load_builtin("small_resnet_ibn_b", "typeset-digits", path=other)  # a digits file under a typeset name

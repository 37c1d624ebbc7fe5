"""State-dict compatibility: the authors' release (XingangPan/IBN-Net) and torchvision.

tests/data/authors_keys/<constructor>.txt lists ``key shape`` for every state-dict entry of each
constructor of the authors' ``ibnnet`` package (dumped once from their code; see the README's
"Model zoo" section). A dgbench model must have exactly those keys and shapes and load a state
dict made of them with ``strict=True``. torchvision's baselines are checked live (random init).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.resnet import Bottleneck as TvBottleneck
from torchvision.models.resnet import ResNet as TvResNet

from dgbench.models import create_model

KEYS_DIR = Path(__file__).parent / "data" / "authors_keys"

AUTHORS_CONSTRUCTORS = (
    [f"resnet{d}_ibn_{v}" for d in (18, 34, 50, 101, 152) for v in ("a", "b")]
    + [f"resnext{d}_ibn_a" for d in (50, 101, 152)]
    + [f"se_resnet{d}_ibn_a" for d in (50, 101, 152)]
    + [f"densenet{d}_ibn_a" for d in (121, 161, 169, 201)]
)


def authors_keys(name: str) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for line in (KEYS_DIR / f"{name}.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split()
        out[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return out


def test_every_authors_constructor_has_a_key_list() -> None:
    assert sorted(p.stem for p in KEYS_DIR.glob("*.txt")) == sorted(AUTHORS_CONSTRUCTORS)


@pytest.mark.parametrize("name", AUTHORS_CONSTRUCTORS)
def test_same_keys_and_shapes_as_the_authors_and_strict_load(name: str) -> None:
    expected = authors_keys(name)
    with torch.device("meta"):
        model = create_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(expected)) == [], "keys the release does not have"
    assert sorted(set(expected) - set(ours)) == [], "keys of the release we lack"
    assert ours == expected
    # A checkpoint with exactly the release's keys and shapes loads strictly (meta: no memory).
    ckpt = {
        k: torch.empty(s, device="meta", dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
        for k, s in expected.items()
    }
    result = model.load_state_dict(ckpt, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def tv_resnext(depth: int) -> torch.nn.Module:
    layers = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    return TvResNet(TvBottleneck, layers, groups=32, width_per_group=4)


BASELINES = [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + [f"densenet{d}" for d in (121, 161, 169, 201)] + [
    "resnext50_32x4d", "resnext101_32x4d", "resnext152_32x4d"
]


@pytest.mark.parametrize("name", BASELINES)
def test_torchvision_state_dicts_load_strictly(name: str) -> None:
    with torch.device("meta"):
        tv = tv_resnext(int(name[len("resnext"):name.index("_")])) if name.startswith("resnext") else getattr(torchvision.models, name)()
        ours = create_model(name)
    tv_sd = tv.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in tv_sd.items()}
    ours.load_state_dict(tv_sd, strict=True, assign=True)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_torchvision_weights_compute_the_same_function(name: str) -> None:
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)().eval()
    ours = create_model(name).eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), rtol=1e-5, atol=1e-5)


def test_old_torchvision_densenet_keys_are_renamed() -> None:
    with torch.device("meta"):
        model = create_model("densenet121")
    sd = model.state_dict()
    # torchvision's released files: 'norm.1.weight' style names, and no num_batches_tracked.
    old = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2.") if "denselayer" in k else k: v
           for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert old != dict(sd)
    assert set(model.remap_state_dict(old)) == {k for k in sd if not k.endswith("num_batches_tracked")}

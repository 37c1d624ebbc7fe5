"""The one-pass eval-mode path of the IBN/IN layers equals the generic path (split, IN, BN, cat)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import dgbench
from dgbench.models import ibn
from dgbench.models.ibn import IBN, IBNCat, InstanceNorm2d, PartialIN, reference_layers


@pytest.fixture
def half_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let half-precision CPU inputs take the inference path, as they do on a GPU: CI has no GPU,
    and this is the code a GPU runs (same ops, same fp32 statistics)."""
    monkeypatch.setitem(ibn._FAST_DTYPES, "cpu", ibn._FAST_DTYPES["other"])


def _randomize(m: nn.Module, seed: int) -> nn.Module:
    """Non-trivial affine weights and running statistics (defaults would make BN an identity)."""
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm2d, nn.InstanceNorm2d)) and mod.weight is not None:
            mod.weight.data = torch.rand(mod.weight.shape, generator=g) + 0.5
            mod.bias.data = torch.rand(mod.bias.shape, generator=g) - 0.5
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean = torch.rand(mod.running_mean.shape, generator=g) - 0.5
            mod.running_var = torch.rand(mod.running_var.shape, generator=g) + 0.5
    return m.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


LAYERS = [
    lambda: IBN(12, 0.5), lambda: IBN(12, 0.25), lambda: IBN(10, 0.4, in_first=False), lambda: IBN(8, 1.0),
    lambda: IBN(8, 0.0), lambda: IBNCat(6), lambda: PartialIN(12, 0.5), lambda: PartialIN(8, 1.0),
    lambda: InstanceNorm2d(8, affine=True), lambda: InstanceNorm2d(8, affine=False),
]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_layer_fast_path_matches_reference(make, channels_last: bool) -> None:
    layer = _randomize(make(), 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    c = getattr(layer, "planes", None) or getattr(layer, "num_features", None) or layer.IN.num_features
    # an offset mean, so a formula that cancels badly would show
    x = (torch.randn(3, c, 9, 7, generator=torch.Generator().manual_seed(2)) * 2 + 3).contiguous(memory_format=fmt)
    with torch.inference_mode():
        fast = layer(x)
        with reference_layers():
            ref = layer(x)
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    assert _rel(fast, ref) < 1e-6
    if channels_last:
        assert fast.is_contiguous(memory_format=torch.channels_last)


def test_train_mode_keeps_the_reference_path() -> None:
    layer = _randomize(IBN(8, 0.5), 3).train()
    x = torch.randn(4, 8, 5, 5)
    a = layer(x)
    with reference_layers():
        b = layer(x)
    assert torch.equal(a, b)
    assert layer.BN.num_batches_tracked.item() == 2  # BN saw both batches in training mode


@pytest.mark.parametrize("name", ["resnet18_ibn_a", "resnet18_ibn_b"])
def test_model_fp32_and_bf16(name: str, half_path_on_cpu: None) -> None:
    torch.manual_seed(0)
    m = _randomize(dgbench.create_model(name, pretrained=False), 4).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = m(x)
        with reference_layers():
            ref = m(x)
        assert _rel(fast, ref) < 1e-5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast16 = m(x).float()
            with reference_layers():
                ref16 = m(x).float()
    # bf16: the fast path is as far from the fp32 result as the generic bf16 path (2x margin)
    assert _rel(fast16, ref) < max(2 * _rel(ref16, ref), 1e-2)


@pytest.mark.parametrize("make", [lambda: IBN(16, 0.5), lambda: InstanceNorm2d(16, affine=True), lambda: PartialIN(16)])
def test_layer_bf16_is_as_close_to_fp64_as_the_generic_bf16_path(make, half_path_on_cpu: None) -> None:
    layer = _randomize(make(), 5)
    x64 = (torch.randn(4, 16, 14, 14, generator=torch.Generator().manual_seed(6)) * 2 + 3).double()
    x = x64.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        exact = layer.double()(x.double())  # the same (rounded) input, in float64
        layer.float()
        fast = layer(x)
        with reference_layers():
            ref = layer(x)
    assert fast.dtype == ref.dtype == torch.bfloat16
    assert _rel(fast, exact) <= max(2 * _rel(ref, exact), 4e-3)


@pytest.mark.parametrize("make", [lambda: IBN(16, 0.5), lambda: InstanceNorm2d(16, affine=True), lambda: PartialIN(16)])
def test_half_precision_on_the_cpu_keeps_the_generic_path(make) -> None:
    """On the CPU PyTorch's own bf16 norm kernels beat the path's mixed-dtype ops: bf16 there is
    computed exactly as by the generic layers, while fp32 takes the inference path."""
    layer = _randomize(make(), 7)
    x = (torch.randn(2, 16, 10, 10, generator=torch.Generator().manual_seed(8)) * 2 + 3)
    with torch.inference_mode():
        with reference_layers():
            ref16, ref32 = layer(x.bfloat16()), layer(x)
        assert torch.equal(layer(x.bfloat16()), ref16)
        fast32 = layer(x)
    assert not torch.equal(fast32, ref32) and _rel(fast32, ref32) < 1e-6  # fp32: the other path

"""The model zoo: every variant builds and runs, has the expected size, and puts IN where the
paper's rules (as read in dgbench.models.ibn) say."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from dgbench.errors import UnknownNameError
from dgbench.models import IBN, IBNCat, PartialIN, create_model, list_models, model_info, resolve_name
from dgbench.models.resnet import RESNET_LAYERS, BasicBlock, Bottleneck, ResNet

VARIANTS = ["", "_ibn_a", "_ibn_b", "_ibn_c", "_ibn_d", "_ibn_ad", "_ibn_a2"]
BASIC_VARIANTS = [v for v in VARIANTS if v != "_ibn_a2"]  # a x2 needs a bottleneck (see ibn.py)
ZOO_FAMILIES = {"resnet", "resnext", "se_resnet", "densenet"}


def zoo() -> list[str]:
    return [n for n in list_models() if model_info(n).family in ZOO_FAMILIES]


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm statistics and affine parameters, so 'eval mode' is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


# -- the registry ---------------------------------------------------------------------------------

def test_zoo_has_every_family_depth_and_variant() -> None:
    names = set(list_models())
    for depth in (18, 34, 50, 101, 152):
        for v in VARIANTS if depth >= 50 else BASIC_VARIANTS:
            assert f"resnet{depth}{v}" in names
    for depth in (50, 101, 152):
        assert {f"resnext{depth}_32x4d", f"resnext{depth}_ibn_a", f"se_resnet{depth}", f"se_resnet{depth}_ibn_a"} <= names
    for depth in (121, 161, 169, 201):
        assert {f"densenet{depth}", f"densenet{depth}_ibn_a"} <= names


def test_aliases_mean_resnet50_variants() -> None:
    for v in ("a", "b", "c", "d", "ad", "a2"):
        assert resolve_name(f"ibn_{v}") == f"resnet50_ibn_{v}"
    assert resolve_name("resnext101_32x4d_ibn_a") == "resnext101_ibn_a"
    assert model_info("resnet50").variant == "baseline"


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError) as exc:
        create_model("resnet50_ibn_aa")
    assert "resnet50_ibn_a" in str(exc.value)


def test_list_models_pattern_and_pretrained_filter() -> None:
    assert list_models("resnet18_ibn_*") == [f"resnet18{v}" for v in sorted(BASIC_VARIANTS[1:])]
    published = list_models(pretrained=True)
    assert "resnet50_ibn_a" in published and "resnet50_ibn_c" not in published


def test_create_model_records_what_was_built() -> None:
    with torch.device("meta"):
        m = create_model("ibn_a", num_classes=7, ibn_ratio=0.25)
    assert m.dgbench_name == "resnet50_ibn_a"
    assert m.variant_kwargs == {"ibn_ratio": 0.25}
    assert m.pretrained_cfg.input_size == (3, 224, 224) and m.weights_sha256 is None
    assert m.fc.out_features == 7


# -- forward passes -------------------------------------------------------------------------------

# Real arithmetic at 224 and at a non-square size for every variant on ResNet-18, and at a
# small non-square size for one model of each other family. Everything else (ResNet-50 and the
# deep models) runs on the meta device: shapes are propagated without arithmetic, so the whole zoo
# is checked while the suite stays fast on a 2-core CPU.
@pytest.mark.parametrize("name", [f"resnet18{v}" for v in BASIC_VARIANTS])
def test_every_variant_forward_224_and_non_square(name: str) -> None:
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 224, 224))
        z = model(torch.randn(2, 3, 96, 160))
    assert y.shape == (1, 10) and z.shape == (2, 10)
    assert torch.isfinite(y).all() and torch.isfinite(z).all()


@pytest.mark.parametrize("name", ["resnet50_ibn_a", "resnext50_ibn_a", "se_resnet50_ibn_a", "densenet121_ibn_a"])
def test_family_forward_real(name: str) -> None:
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        z = model(torch.randn(2, 3, 48, 64))
    assert z.shape == (2, 10) and torch.isfinite(z).all()


DEEP = ("resnet101", "resnet152", "resnext101", "resnext152", "se_resnet101", "se_resnet152",
        "densenet161", "densenet169", "densenet201")


def test_every_zoo_model_runs_on_meta_at_224_and_non_square() -> None:
    names = zoo()
    assert len(names) == 33 + 6 + 6 + 8  # 5 depths x 7 variants, less resnet18/34_ibn_a2
    for name in names:
        with torch.device("meta"):
            model = create_model(name).eval()
            if name.startswith(DEEP):
                # Deeper models repeat the blocks checked at depth 50/121: building them (keys and
                # shapes are checked against the releases elsewhere) is enough; the forward runs
                # in `dgbench models`' GFLOPs count.
                continue
            for h, w in ((224, 224), (200, 264)):
                assert model(torch.empty(2, 3, h, w)).shape == (2, 1000), (name, h, w)


@pytest.mark.parametrize(
    "kwargs",
    [dict(ibn_ratio=0.0), dict(ibn_ratio=0.25), dict(ibn_ratio=0.75), dict(ibn_ratio=1.0), dict(ibn_ratio="full"),
     dict(ibn_groups=()), dict(ibn_groups=(1,)), dict(ibn_groups=(1, 2)), dict(ibn_groups=(1, 2, 3, 4))],
)
def test_table4_table5_knobs_build_and_run(kwargs: dict) -> None:
    model = create_model("resnet18_ibn_a", num_classes=5, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 32)).shape == (2, 5)


def test_knob_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="ratio"):
        create_model("resnet18_ibn_a", ibn_ratio=1.5)
    with pytest.raises(ValueError, match="groups"):
        create_model("resnet18_ibn_a", ibn_groups=(5,))
    with pytest.raises(ValueError, match="no effect"):
        create_model("resnet18", ibn_ratio=0.5)


def test_general_resnet_cifar_stem_dilation_and_features() -> None:
    small = ResNet(BasicBlock, [1, 1, 1], num_classes=10, stem="cifar", widths=(16, 32, 64), variant="ibn_a")
    assert isinstance(small.maxpool, nn.Identity)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and small.conv1.bias is None
    x = torch.randn(2, 3, 32, 32)
    assert small.forward_features(x).shape == (2, 64, 8, 8)
    assert small(x).shape == (2, 10)
    seg = ResNet(Bottleneck, [1, 1, 2, 2], num_classes=0, variant="ibn_b", widths=(8, 16, 32, 64),
                 replace_stride_with_dilation=(False, True, True))
    with torch.no_grad():
        feats = seg.eval().forward_features(torch.randn(1, 3, 64, 96))
    assert feats.shape == (1, 256, 8, 12)  # output stride 8
    assert seg.layer4[1].conv2.dilation == (4, 4) and isinstance(seg.fc, nn.Identity)
    with torch.device("meta"):  # the real thing, on meta: create_model passes the knob through
        deeplab = create_model("resnet50_ibn_a", num_classes=0, replace_stride_with_dilation=(False, True, True))
        assert deeplab.forward_features(torch.empty(1, 3, 64, 96)).shape == (1, 2048, 8, 12)


# -- IBN-b invariance (why Table 1's std x1.5 drop is exactly 0 for IBN-b) -------------------------

@pytest.mark.parametrize("name", ["resnet50_ibn_b", "resnet18_ibn_b"])
def test_ibn_b_is_invariant_to_scaling_the_normalized_input(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_norms(create_model(name))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y, y15 = model(x), model(1.5 * x)
    assert torch.allclose(y15, y, rtol=1e-4, atol=1e-4 * y.abs().max().item())


@pytest.mark.parametrize("name", ["resnet18", "resnet18_ibn_a", "resnet18_ibn_d"])
def test_models_without_an_in_stem_are_not_scale_invariant(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_norms(create_model(name))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y, y15 = model(x), model(1.5 * x)
    assert (y15 - y).abs().max() > 1e-2 * y.abs().max()


# -- parameter counts -----------------------------------------------------------------------------

def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def tv_params(name: str) -> int:
    with torch.device("meta"):
        return n_params(getattr(torchvision.models, name)())


def zoo_params(name: str) -> int:
    with torch.device("meta"):
        return n_params(create_model(name))


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_parameter_counts_follow_the_variant(depth: int) -> None:
    block, layers = RESNET_LAYERS[depth]
    exp = block.expansion
    base = tv_params(f"resnet{depth}")  # torchvision's count, independent of our code
    assert zoo_params(f"resnet{depth}") == base
    # a, a x2: an IBN layer has exactly the affine parameters of the BN it replaces.
    assert zoo_params(f"resnet{depth}_ibn_a") == base
    if block is Bottleneck:
        assert zoo_params(f"resnet{depth}_ibn_a2") == base
    # b: the stem IN replaces a BN (same count); one affine IN after the last block of groups 1-2.
    assert zoo_params(f"resnet{depth}_ibn_b") == base + 2 * (64 * exp + 128 * exp)
    # d: the same two positions, IN on half of the channels; the stem IBN costs nothing extra.
    assert zoo_params(f"resnet{depth}_ibn_d") == base + (64 * exp + 128 * exp)
    assert zoo_params(f"resnet{depth}_ibn_ad") == base + (64 * exp + 128 * exp)
    # c: bn1 of groups 1-3 also emits IN(all channels): +2C affine, and the 3x3 conv after it
    # takes 2C inputs (+C*C*9 weights; for BasicBlock, conv2 is that conv).
    extra = sum(n * (9 * w * w + 2 * w) for n, w in zip(layers[:3], (64, 128, 256)))
    assert zoo_params(f"resnet{depth}_ibn_c") == base + extra


def test_other_family_parameter_counts() -> None:
    assert zoo_params("resnext50_32x4d") == tv_params("resnext50_32x4d")
    assert zoo_params("resnext50_ibn_a") == tv_params("resnext50_32x4d")
    for d in (121, 161, 169, 201):
        assert zoo_params(f"densenet{d}") == tv_params(f"densenet{d}")
        assert zoo_params(f"densenet{d}_ibn_a") == tv_params(f"densenet{d}")
    # SE adds two bias-free linears C -> C/16 -> C per bottleneck (C = 4 * planes).
    _, layers = RESNET_LAYERS[50]
    se = sum(n * 2 * (4 * w) * (4 * w // 16) for n, w in zip(layers, (64, 128, 256, 512)))
    assert zoo_params("se_resnet50") == tv_params("resnet50") + se
    assert zoo_params("se_resnet50_ibn_a") == tv_params("resnet50") + se


# -- IN placement, by walking the modules ---------------------------------------------------------

def placement(model: nn.Module) -> dict[str, str]:
    """name -> kind for every module that involves IN (IBN, IBNCat, PartialIN, plain IN)."""
    out: dict[str, str] = {}
    skip: set[str] = set()
    for name, m in model.named_modules():
        if any(name.startswith(s + ".") for s in skip):
            continue
        for cls, kind in ((IBNCat, "cat"), (IBN, "ibn"), (PartialIN, "partial"), (nn.InstanceNorm2d, "in")):
            if isinstance(m, cls):
                out[name] = kind
                skip.add(name)
                break
    return out


def blocks_of(depth: int, groups: tuple[int, ...]) -> list[str]:
    _, layers = RESNET_LAYERS[depth]
    return [f"layer{g}.{i}" for g in groups for i in range(layers[g - 1])]


def last_block(depth: int, g: int) -> str:
    return f"layer{g}.{RESNET_LAYERS[depth][1][g - 1] - 1}"


@pytest.mark.parametrize("depth", [18, 50])
def test_in_placement_per_variant(depth: int) -> None:
    a = {f"{b}.bn1": "ibn" for b in blocks_of(depth, (1, 2, 3))}
    after_b = {f"{last_block(depth, g)}.IN": "in" for g in (1, 2)}
    after_d = {f"{last_block(depth, g)}.IN": "partial" for g in (1, 2)}
    expected = {
        "": {},
        "_ibn_a": a,
        "_ibn_b": {"bn1": "in", **after_b},
        "_ibn_c": {f"{b}.bn1": "cat" for b in blocks_of(depth, (1, 2, 3))},
        "_ibn_d": {"bn1": "ibn", **after_d},
        "_ibn_ad": {"bn1": "ibn", **a, **after_d},
    }
    if depth >= 50:  # a x2 exists for bottlenecks only (see test_a2_refused_on_basic_blocks)
        expected["_ibn_a2"] = {**a, **{f"{b}.bn2": "ibn" for b in blocks_of(depth, (1, 2, 3))}}
    for v, exp in expected.items():
        with torch.device("meta"):
            model = create_model(f"resnet{depth}{v}")
        assert placement(model) == exp, v
    # IBN layers instance-normalize the first half of the channels (the authors' order).
    with torch.device("meta"):
        m = create_model(f"resnet{depth}_ibn_a")
    assert (m.layer2[0].bn1.n_in, m.layer2[0].bn1.n_bn) == (64, 64)  # layer2 planes = 128 in both


def test_a2_refused_on_basic_blocks() -> None:
    """IBN-a x2 would have to put IN at bn2, the last norm of a BasicBlock's residual path, which
    the paper keeps BN: every BasicBlock a2 name is refused with that reason, and so is a direct build."""
    from dgbench.errors import RefusedNameError
    from dgbench.models.ibn import VariantError

    for name in ("resnet18_ibn_a2", "resnet34_ibn_a2", "small_resnet_ibn_a2", "small_ibn_a2",
                 "deeplab_small_resnet_ibn_a2"):
        with pytest.raises(RefusedNameError, match=rf"{name}.*last norm.*stays BN"):
            create_model(name)
        assert name not in list_models()
    with pytest.raises(VariantError, match="BasicBlock"):
        ResNet(BasicBlock, (1, 1, 1, 1), variant="a2")
    # The last norm of every residual path is BN in every other variant too (bn2 / bn3).
    for name in ["resnet18" + v for v in BASIC_VARIANTS] + ["resnet50" + v for v in VARIANTS]:
        with torch.device("meta"):
            m = create_model(name)
        for blk in m.modules():
            if isinstance(blk, (BasicBlock, Bottleneck)):
                last = blk.bn2 if isinstance(blk, BasicBlock) else blk.bn3
                assert type(last) is nn.BatchNorm2d, name


def test_ratio_and_groups_knobs_move_the_in() -> None:
    with torch.device("meta"):
        m = create_model("resnet50_ibn_a", ibn_ratio=0.25, ibn_groups=(1, 2))
    assert placement(m) == {f"{b}.bn1": "ibn" for b in blocks_of(50, (1, 2))}
    assert (m.layer1[0].bn1.n_in, m.layer1[0].bn1.n_bn) == (16, 48)
    with torch.device("meta"):
        full = create_model("resnet50_ibn_a", ibn_ratio="full")
    norms = [n for n, mod in full.named_modules() if isinstance(mod, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    assert norms and all(isinstance(full.get_submodule(n), nn.InstanceNorm2d) for n in norms)
    with torch.device("meta"):
        plain = create_model("resnet50")
    assert len(norms) == sum(isinstance(mod, nn.BatchNorm2d) for mod in plain.modules())
    with torch.device("meta"):
        none = create_model("resnet50_ibn_a", ibn_groups=())
    assert placement(none) == {}


def test_densenet_ibn_a_placement() -> None:
    with torch.device("meta"):
        m = create_model("densenet121_ibn_a")
    expected = {
        f"features.denseblock{b}.denselayer{i}.norm1": "ibn"
        for b, n in zip((1, 2, 3), (6, 12, 24)) for i in range(1, n + 1, 3)
    }
    assert placement(m) == expected
    layer = m.features.denseblock2.denselayer4.norm1
    c = layer.planes
    assert not layer.in_first and layer.n_bn == int(c * 0.6) and layer.n_in == c - int(c * 0.6)


def test_resnext_and_se_resnet_ibn_a_placement() -> None:
    for name in ("resnext101_ibn_a", "se_resnet101_ibn_a"):
        with torch.device("meta"):
            m = create_model(name)
        assert placement(m) == {f"{b}.bn1": "ibn" for b in blocks_of(101, (1, 2, 3))}, name


# -- the layers compute what they claim -----------------------------------------------------------

@pytest.mark.parametrize("in_first", [True, False])
def test_ibn_layer_is_in_on_its_channels_and_bn_on_the_rest(in_first: bool) -> None:
    torch.manual_seed(0)
    layer = randomize_norms(IBN(10, 0.4, in_first=in_first))
    x = torch.randn(3, 10, 5, 6)
    n_in = layer.n_in
    assert n_in == (4 if in_first else 10 - 6)
    if in_first:
        xi, xb = x[:, :n_in], x[:, n_in:]
    else:
        xb, xi = x[:, : 10 - n_in], x[:, 10 - n_in:]
    yi = nn.functional.instance_norm(xi, weight=layer.IN.weight, bias=layer.IN.bias)
    yb = nn.functional.batch_norm(xb, layer.BN.running_mean, layer.BN.running_var, layer.BN.weight, layer.BN.bias)
    expected = torch.cat((yi, yb) if in_first else (yb, yi), dim=1)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_partial_in_leaves_the_other_channels_untouched() -> None:
    layer = PartialIN(8, 0.5)
    x = torch.randn(2, 8, 4, 4) * 3 + 1
    y = layer(x)
    assert torch.equal(y[:, 4:], x[:, 4:])
    assert torch.allclose(y[:, :4].mean(dim=(2, 3)), torch.zeros(2, 4), atol=1e-5)


def test_block_classes_follow_depth() -> None:
    with torch.device("meta"):
        assert isinstance(create_model("resnet34").layer1[0], BasicBlock)
        assert isinstance(create_model("resnet50").layer1[0], Bottleneck)

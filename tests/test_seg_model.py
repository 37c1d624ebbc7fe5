"""DeepLab on the zoo's ResNets: registration, output strides, dilations, backbone weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dgbench.errors import CheckpointError
from dgbench.models import create_model, list_models, model_info
from dgbench.models.deeplab import ASPPv2, DeepLab, build_deeplab
from dgbench.models.resnet import RESNET_VARIANTS

TINY = {"widths": (8, 16, 32, 64)}  # the ResNet-50 layout with narrow groups: fast on CPU


def test_registered_for_every_resnet50_variant() -> None:
    names = set(list_models("deeplab_resnet50*", task="segmentation"))
    assert names == {f"deeplab_resnet50{s}" for s in RESNET_VARIANTS}
    info = model_info("deeplab_ibn_b")
    assert info.name == "deeplab_resnet50_ibn_b" and info.family == "deeplab" and info.task == "segmentation"
    assert info.pretrained_cfg.num_classes == 19


@pytest.mark.parametrize("stride, feat", [(8, (4, 6)), (16, (2, 3))])
def test_output_stride_feature_sizes(stride: int, feat: tuple[int, int]) -> None:
    m = create_model("deeplab_resnet50_ibn_a", output_stride=stride, **TINY).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        f = m.forward_features(x)
        y = m(x)
    assert tuple(f.shape[-2:]) == feat and f.shape[1] == 256
    assert y.shape == (1, 19, 32, 48)  # logits upsampled to the input size


def test_dilations_and_the_paper_head() -> None:
    m = create_model("deeplab_resnet50", **TINY)
    bb = m.backbone
    # Output stride 8: groups 3 and 4 keep stride 1 and dilate 2 and 4.
    assert bb.layer3[0].conv2.stride == (1, 1) and bb.layer3[1].conv2.dilation == (2, 2)
    assert bb.layer4[0].conv2.stride == (1, 1) and bb.layer4[1].conv2.dilation == (4, 4)
    assert bb.layer2[0].conv2.stride == (2, 2)
    assert isinstance(m.head, ASPPv2)
    assert [c.dilation for c in m.head.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert "fc.weight" not in {k.split("backbone.", 1)[-1] for k in m.state_dict()}


def test_ibn_placement_is_the_zoos() -> None:
    seg = create_model("deeplab_resnet50_ibn_b", **TINY).backbone
    cls = create_model("resnet50_ibn_b", replace_stride_with_dilation=(False, True, True), **TINY)

    def kinds(net: torch.nn.Module) -> list[tuple[str, str]]:
        return [(n, type(m).__name__) for n, m in net.named_modules() if not n.startswith("fc")]

    assert kinds(seg) == kinds(cls)
    assert any(t == "InstanceNorm2d" for _, t in kinds(seg))


def test_pretrained_backbone_is_strict(tmp_path: Path) -> None:
    src = create_model("resnet50_ibn_a", **TINY)
    path = tmp_path / "resnet50_ibn_a.pth"
    torch.save(src.state_dict(), path)
    m = build_deeplab("resnet50_ibn_a", "a", pretrained_backbone=str(path), **TINY)
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    other = create_model("resnet50_ibn_b", **TINY)  # IN where a has IBN: keys do not fit
    torch.save(other.state_dict(), tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="does not fit"):
        build_deeplab("resnet50_ibn_a", "a", pretrained_backbone=str(tmp_path / "b.pth"), **TINY)


def test_checkpoint_for_another_number_of_classes(tmp_path: Path) -> None:
    m11 = create_model("deeplab_resnet50", num_classes=11, **TINY)
    torch.save(m11.state_dict(), tmp_path / "m11.pth")
    with pytest.raises(CheckpointError, match=r"head\.branches\.0\.weight: checkpoint \(11,"):
        create_model("deeplab_resnet50", pretrained=str(tmp_path / "m11.pth"), **TINY)


def test_aspp_v3_head_runs() -> None:
    m = create_model("deeplab_resnet50_ibn_a", head="aspp_v3", output_stride=16, **TINY).eval()
    assert isinstance(m, DeepLab)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, 19, 32, 32)

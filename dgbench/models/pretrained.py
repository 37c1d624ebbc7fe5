"""Weights with their metadata, as data: every released checkpoint of every zoo architecture.

One :class:`PretrainedCfg` per set of weights (timm's pretrained config, torchvision's ``Weights``):
the architecture and a *tag* naming the weights (``resnet50.tv_in1k``, as timm names them), where
the file is (URL or a file shipped in ``dgbench/assets``), its hash, how inputs must be prepared,
who trained it under which license, and the numbers its publisher reports, with the citation.

:data:`RELEASED` lists them per architecture, the default tag first. The default tags are the
weights dgbench always loaded (``tv_in1k`` for a baseline, ``authors`` for an IBN-Net), so a
record made without a tag keeps its key. This module imports nothing of the registry or the
loader: both read it (the registry to know an architecture's tags, the loader where a file is).
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlparse

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """One set of weights of one architecture: where it is, how it was made, how inputs are prepared."""

    url: str | None = None  # where the weights are published (None: no published weights)
    file: str | None = None  # or a file shipped inside the package, relative to dgbench/assets
    sha256_prefix: str | None = None  # hash prefix as in torch hub file names (name-<prefix>.pth)
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875  # resize the shorter side to input/crop_pct (224/0.875 = 256), then crop
    num_classes: int = 1000
    source: str = ""
    license: str = ""
    architecture: str = ""  # the registry name these weights fit (set when registered)
    tag: str = ""  # which weights of the architecture: ``authors``, ``tv_in1k``, ``builtin`` ...
    sha256: str | None = None  # the full digest, where it is known (shipped files)
    # What the publisher reports for these weights: (metric, value) pairs in dgbench's units
    # (``top1_err``/``top5_err`` in percent), and where the numbers are from.
    published: tuple[tuple[str, float], ...] = ()
    published_source: str = ""

    @property
    def resize_size(self) -> int:
        return int(round(self.input_size[-1] / self.crop_pct))

    @property
    def has_weights(self) -> bool:
        return bool(self.url or self.file)

    @property
    def file_name(self) -> str | None:
        """The checkpoint's file name (the last part of its URL or shipped path)."""
        where = self.url or self.file
        return os.path.basename(urlparse(where).path) if where else None

    @property
    def published_metrics(self) -> dict[str, float]:
        return dict(self.published)

    @property
    def full_name(self) -> str:
        """``architecture.tag`` (the name that selects these weights), or the architecture alone."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["published"] = self.published_metrics
        return d


def top_errors_from_accuracy(top1_acc: float, top5_acc: float) -> tuple[tuple[str, float], ...]:
    """A publisher's accuracies (percent) as dgbench's errors, rounded to the digits they gave."""
    return (("top1_err", round(100 - top1_acc, 3)), ("top5_err", round(100 - top5_acc, 3)))


def top_errors(top1_err: float, top5_err: float) -> tuple[tuple[str, float], ...]:
    return (("top1_err", top1_err), ("top5_err", top5_err))


# torch hub's rule for the hash prefix in a file name: name-<hex>.ext
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def hash_prefix_of(url_or_name: str) -> str | None:
    """The sha256 prefix torch hub reads off a checkpoint's file name, or None."""
    m = _HASH_IN_NAME.search(os.path.basename(urlparse(url_or_name).path or url_or_name))
    return m.group(1) if m else None


_IBN = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"
_TV = "https://download.pytorch.org/models/"
IBN_SOURCE = "XingangPan/IBN-Net v1.0 release (Pan et al., ECCV 2018), ImageNet-1k"
_IBN_LICENSE = "MIT, as stated by github.com/XingangPan/IBN-Net (not re-checked offline)"
TV_SOURCE = "torchvision IMAGENET1K_V1, ImageNet-1k"
TV2_SOURCE = "torchvision IMAGENET1K_V2, ImageNet-1k"
_TV_LICENSE = "BSD-3-Clause (torchvision)"
_README = "authors' README, github.com/XingangPan/IBN-Net (IBN-Net column, top-1/top-5 error)"
_PAPER_T3 = ("IBN-Net paper (Pan et al., ECCV 2018) Table 3, top-1/top-5 error of the paper's model; the "
             "release is not stated to be the same model")
_TV_META = "torchvision's Weights meta (ImageNet-1K acc@1/acc@5), as error"
# torchvision's V2 recipe evaluates at resize 232, crop 224 (its transforms(): crop_pct 224/232).
_TV2_CROP = 224 / 232

# Short names of the weights' sources, for listings and tables. The baselines' ImageNet weights
# are torchvision's V1 recipe, not the paper's re-implementation (Table 2: ResNet-50 24.27/7.08
# top-1/top-5 error there, 23.87/7.14 for torchvision's): a measured IBN-vs-baseline gap mixes
# two training recipes, so every table that puts them beside the paper says which weights ran.
SOURCE_LABELS: dict[str, str] = {TV_SOURCE: "torchvision V1", TV2_SOURCE: "torchvision V2", IBN_SOURCE: "IBN-Net authors"}


def weights_label(cfg: PretrainedCfg) -> str:
    """Who trained these weights: ``torchvision V1``, ``IBN-Net authors``, ``dgbench built-in``
    (shipped file), or ``none``."""
    if not cfg.has_weights:
        return "none"
    return SOURCE_LABELS.get(cfg.source, "dgbench built-in" if cfg.file else cfg.source)


def _authors(file: str, published: tuple[tuple[str, float], ...] = (), cited: str = "") -> PretrainedCfg:
    return PretrainedCfg(url=_IBN + file, sha256_prefix=hash_prefix_of(file), source=IBN_SOURCE, license=_IBN_LICENSE,
                         tag="authors", published=published, published_source=cited if published else "")


def _tv(file: str, top1_acc: float, top5_acc: float) -> PretrainedCfg:
    return PretrainedCfg(url=_TV + file, sha256_prefix=hash_prefix_of(file), source=TV_SOURCE, license=_TV_LICENSE,
                         tag="tv_in1k", published=top_errors_from_accuracy(top1_acc, top5_acc), published_source=_TV_META)


def _tv2(file: str, top1_acc: float, top5_acc: float) -> PretrainedCfg:
    return replace(_tv(file, top1_acc, top5_acc), source=TV2_SOURCE, tag="tv2_in1k", crop_pct=_TV2_CROP)


# architecture -> its released weights, the default first. ImageNet weights all evaluate as
# released: resize the shorter side (bilinear), center crop 224, ImageNet mean/std.
RELEASED: dict[str, tuple[PretrainedCfg, ...]] = {
    # The authors' release: every URL of their ibnnet/*.py. Its README puts these files beside the
    # paper's Table 2 numbers; an older README said the paper's ResNet-50/101 IBN-a were a slower
    # implementation and gave 22.76/6.41 and 21.29/5.61 for the faster one: which one the v1.0
    # files are is not stated, so these are the numbers as the README shows them today.
    "resnet18_ibn_a": (_authors("resnet18_ibn_a-2f571257.pth", top_errors(29.17, 10.24), _README),),
    "resnet34_ibn_a": (_authors("resnet34_ibn_a-94bc1577.pth", top_errors(25.78, 8.19), _README),),
    "resnet50_ibn_a": (_authors("resnet50_ibn_a-d9d0bb7b.pth", top_errors(22.54, 6.32), _README),),
    "resnet101_ibn_a": (_authors("resnet101_ibn_a-59ea0ac6.pth", top_errors(21.39, 5.59), _README),),
    "resnet18_ibn_b": (_authors("resnet18_ibn_b-bc2f3c11.pth"),),
    "resnet34_ibn_b": (_authors("resnet34_ibn_b-04134c37.pth"),),
    "resnet50_ibn_b": (_authors("resnet50_ibn_b-9ca61e85.pth", top_errors(23.64, 6.86), _PAPER_T3),),
    "resnet101_ibn_b": (_authors("resnet101_ibn_b-c55f6dba.pth"),),
    "resnext101_ibn_a": (_authors("resnext101_ibn_a-6ace051d.pth", top_errors(20.88, 5.42), _README),),
    "se_resnet101_ibn_a": (_authors("se_resnet101_ibn_a-fabed4e2.pth", top_errors(21.25, 5.51), _README),),
    "densenet121_ibn_a": (_authors("densenet121_ibn_a-e4af5cc1.pth", top_errors(24.47, 7.25), _README),),
    "densenet169_ibn_a": (_authors("densenet169_ibn_a-9f32c161.pth", top_errors(23.25, 6.51), _README),),
    # torchvision's baselines (the keys of our baselines are torchvision's); V1 stays the default.
    "resnet18": (_tv("resnet18-f37072fd.pth", 69.758, 89.078),),
    "resnet34": (_tv("resnet34-b627a593.pth", 73.314, 91.42),),
    "resnet50": (_tv("resnet50-0676ba61.pth", 76.13, 92.862), _tv2("resnet50-11ad3fa6.pth", 80.858, 95.434)),
    "resnet101": (_tv("resnet101-63fe2227.pth", 77.374, 93.546), _tv2("resnet101-cd907fc2.pth", 81.886, 95.78)),
    "resnet152": (_tv("resnet152-394f9c45.pth", 78.312, 94.046), _tv2("resnet152-f82ba261.pth", 82.284, 96.002)),
    "resnext50_32x4d": (_tv("resnext50_32x4d-7cdf4587.pth", 77.618, 93.698),
                        _tv2("resnext50_32x4d-1a0047aa.pth", 81.198, 95.34)),
    "densenet121": (_tv("densenet121-a639ec97.pth", 74.434, 91.972),),
    "densenet161": (_tv("densenet161-8d451a50.pth", 77.138, 93.56),),
    "densenet169": (_tv("densenet169-b2777c0a.pth", 75.6, 92.806),),
    "densenet201": (_tv("densenet201-c1103571.pth", 76.896, 93.37),),
}


def released_weights(name: str) -> tuple[PretrainedCfg, ...]:
    """The released weights of the zoo architecture ``name``, the default first; without any, one
    config that says so (the preprocessing still applies to a checkpoint passed by path)."""
    return RELEASED.get(name) or (PretrainedCfg(source="no published weights"),)

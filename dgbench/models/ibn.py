"""Instance-Batch Normalization: the IBN layers and the rules that say where they go.

Every family (ResNet, ResNeXt, SE-ResNet, the small digit nets, DeepLab backbones) asks one
:class:`IBNConfig` which normalization to build at each position, so the placement rules of the
paper's variants are written down exactly once, here.

Positions in a residual network (``group`` is the residual group, 1..4 = conv2_x..conv5_x):

* ``stem``: the normalization after the first convolution (``bn1`` of the network);
* ``block_norm(k)``: the k-th normalization of a block's residual path (``bn1``, ``bn2``, ``bn3``);
* ``downsample``: the normalization of the projection shortcut;
* ``after_add``: an extra IN after the residual addition, before the final ReLU (key ``IN``).

Placement per variant (defaults; ``ibn_groups`` replaces the group set of every IN layer
of the variant except the stem's; ``ibn_ratio`` replaces the 0.5 IN share of every IBN /
PartialIN layer of the variant, the stem's included):

=========  ============================================================================
baseline   BN everywhere.
a          ``bn1`` of every block of groups 1-3 is :class:`IBN` (IN on the first
           ``int(C * ratio)`` channels, BN on the rest; ratio 0.5). Group 4 unchanged.
b          stem norm is an affine IN; an affine IN after the addition of the *last* block of
           groups 1-2 (the authors' release; the paper says "after conv1, conv2_x, conv3_x").
c          ``bn1`` of every block of groups 1-3 is :class:`IBNCat`: IN and BN both on all C
           channels, outputs concatenated (2C channels), so the next conv takes 2C inputs.
d          b's positions, keeping two kinds of features: the stem norm is an :class:`IBN`
           (half IN, half BN) and after the addition of the last block of groups 1-2 a
           :class:`PartialIN` normalizes the first half of the channels, the rest pass as is.
ad         a and d together: a's ``bn1`` IBN layers in groups 1-3 plus d's stem and
           after-addition layers in groups 1-2.
a2         a, plus an IBN layer at the second normalization of the residual path
           (``bn2``) of the same blocks. Bottleneck networks only: in a two-norm BasicBlock
           ``bn2`` is the last norm, which stays BN, so a2 is refused there (see below).
full       ``ibn_ratio="full"``: every BN of the network (stem, blocks, shortcuts, all four
           groups) replaced by an affine IN (Table 5's "full").
=========  ============================================================================

Why these readings: the paper (Sec. 3.2, Fig. 4) describes c, d, a&d and a x2 only in prose and
a figure. c is "feed the feature to both IN and BN and concatenate", which adds channels (the
paper: "would introduce more parameters"). d is "the idea of keeping two kinds of features applied
to IBN-b", so every IN that b adds becomes half IN / half untouched (the stem, where b replaces
BN, becomes half IN / half BN). a x2 "adds additional IBN layers to IBN-Net-a"; the paper argues
IN must not sit at the *last* norm of the residual path (it would misalign with the identity),
so the only other position in a bottleneck is the second norm, ``bn2``.

a x2 on a BasicBlock (ResNet-18/34, the small digit nets): its residual path has two norms,
``bn1`` (already IBN in a) and ``bn2``, the last one. The paper's rule keeps the last norm BN, and
its other rules exclude the identity path (shortcut norms) and the last group, so a two-norm
network has no position left for a's "additional IBN layers": :meth:`IBNConfig.block_norm`
refuses to build it (:func:`unsupported_reason`), and the registries do not register such names
(asking for one raises an error that gives this reason). Every block norm also obeys the general
rule here: the last norm of a residual path is BN unless the whole network is IN ("full").
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import DgbenchError


class VariantError(DgbenchError, ValueError):
    """A bad IBN variant, ratio or group set (a ValueError, and printed cleanly by the CLI)."""

VARIANTS: tuple[str, ...] = ("baseline", "a", "b", "c", "d", "ad", "a2")

# Default residual groups (1-based) per variant and per kind of IN layer.
_DEFAULT_A_GROUPS = (1, 2, 3)  # a-type IBN layers on the residual path
_DEFAULT_B_GROUPS = (1, 2)  # b/d-type IN after the addition

Ratio = float | Literal["full"]

# ----------------------------------------------------------------------------- inference path
# In eval mode every IN/IBN layer of this module computes ``y = x * scale[n, c] + shift[n, c]``
# in one pass: the IN channels' statistics come from one reduction over a view (no split, no
# contiguous copy: ``nn.InstanceNorm2d`` reshapes a channels_last input to NCHW first), the BN
# channels' scale/shift are constants, and a single addcmul writes the output in the input's
# memory format (no cat). Same formula as PyTorch's own CPU kernels (x * alpha + beta with
# alpha = w / sqrt(var + eps)), statistics in fp32 whatever the input dtype. Training, unbatched
# inputs and IN layers with running statistics keep the reference path below.
_FAST = [True]
# Input dtypes that take the inference path, per device type (float64 always keeps the generic
# path). On the CPU half precision keeps it too: there PyTorch's own bf16 norm kernels are fast,
# while the path's mixed-dtype addcmul (bf16 x, fp32 coefficients) and fp32 reductions of a bf16
# view are not (measured on a 2-core EPYC, ResNet-50 at bf16: IBN-a 0.85x of plain with the path,
# 0.93x without; IBN-b 0.65x / 0.82x). On a GPU those casts happen inside the kernels.
_FAST_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "cpu": (torch.float32,),
    "other": (torch.float32, torch.bfloat16, torch.float16),
}


@contextlib.contextmanager
def reference_layers() -> Iterator[None]:
    """Run IBN/IN layers through the generic (split, ``nn.InstanceNorm2d``, cat) path meanwhile.

    For tests and benchmarks that compare the two paths; the inference path is the default.
    """
    old, _FAST[0] = _FAST[0], False
    try:
        yield
    finally:
        _FAST[0] = old


def _fast_ok(module: nn.Module, x: Tensor) -> bool:
    dtypes = _FAST_DTYPES["cpu" if x.device.type == "cpu" else "other"]
    return (_FAST[0] and not module.training and x.dim() == 4 and x.dtype in dtypes
            and not torch.jit.is_scripting())


def _in_affine(x: Tensor, norm: nn.InstanceNorm2d) -> tuple[Tensor, Tensor] | None:
    """Per-(sample, channel) ``(scale, shift)`` [N, k] in fp32 of an IN layer on ``x`` [N, k, H, W]."""
    if norm.track_running_stats:
        return None
    if x.dtype in (torch.float16, torch.bfloat16):
        # fp32 sums read the half-precision view directly (no fp32 copy of it); the cancellation of
        # E[x^2] - E[x]^2 in fp32 stays far below the inputs' own rounding (2^-9 for bf16)
        n = x.shape[2] * x.shape[3]
        mean = torch.sum(x, dim=(2, 3), dtype=torch.float32) / n
        sq = torch.linalg.vector_norm(x, dim=(2, 3), dtype=torch.float32).square() / n
        var = (sq - mean * mean).clamp_min(0)
    else:  # fp32: Welford in one pass, exact to rounding whatever the mean
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0)
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def _bn_affine(norm: nn.BatchNorm2d, n: int) -> tuple[Tensor, Tensor] | None:
    """Eval-mode BN as ``(scale, shift)`` [n, C] (None when it would use batch statistics)."""
    if norm.running_mean is None or norm.running_var is None:
        return None
    scale = torch.rsqrt(norm.running_var.float() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean.float() * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale.expand(n, -1), shift.expand(n, -1)


def _apply_affine(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``x * scale + shift`` with [N, C] coefficients, in x's dtype and memory format."""
    n, c = scale.shape
    if x.dtype == scale.dtype:
        return torch.addcmul(shift.reshape(n, c, 1, 1), x, scale.reshape(n, c, 1, 1))
    # half-precision x: fp32 coefficients, computed in fp32 and rounded once into an x-typed
    # output (rounding scale and shift to bf16 first would cost up to 2^-9 |shift| per element)
    out = torch.empty_like(x)  # keeps x's memory format
    return torch.addcmul(shift.reshape(n, c, 1, 1), x, scale.reshape(n, c, 1, 1), out=out)


def _cat_affine(parts: list[tuple[Tensor, Tensor] | None]) -> tuple[Tensor, Tensor] | None:
    if any(p is None for p in parts):
        return None
    return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)  # type: ignore[index]


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (same arguments, keys and reference behaviour) with the one-pass
    inference path: what the placement rules build wherever they put a whole-channel IN."""

    def forward(self, x: Tensor) -> Tensor:
        if _fast_ok(self, x) and x.shape[1] == self.num_features:
            coef = _in_affine(x, self)
            if coef is not None:
                return _apply_affine(x, *coef)
        return super().forward(x)



class IBN(nn.Module):
    """IN on part of the channels, BN on the rest, outputs concatenated in channel order.

    Args:
        planes: channels of the input.
        ratio: fraction of channels instance-normalized, ``int(planes * ratio)`` of them.
        in_first: IN on the *first* channels (the authors' ResNet layers); ``False`` puts BN on
            the first ``planes - n_in`` channels and IN on the rest (their DenseNet layers).

    The submodules are named ``IN`` and ``BN`` so the authors' checkpoints load key for key.
    A ratio that leaves no channels for one of them makes that submodule ``None``.
    """

    def __init__(self, planes: int, ratio: float = 0.5, in_first: bool = True) -> None:
        super().__init__()
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"IBN ratio must be in [0, 1], got {ratio}")
        self.planes = planes
        self.in_first = in_first
        if in_first:
            self.n_in = int(planes * ratio)
        else:  # the authors' DenseNet layer rounds the BN share instead
            self.n_in = planes - int(planes * (1.0 - ratio))
        self.n_bn = planes - self.n_in
        # Registration order follows the channel order, so state-dict key order matches the release.
        if in_first:
            self.IN = nn.InstanceNorm2d(self.n_in, affine=True) if self.n_in else None
            self.BN = nn.BatchNorm2d(self.n_bn) if self.n_bn else None
        else:
            self.BN = nn.BatchNorm2d(self.n_bn) if self.n_bn else None
            self.IN = nn.InstanceNorm2d(self.n_in, affine=True) if self.n_in else None

    def forward(self, x: Tensor) -> Tensor:
        if _fast_ok(self, x) and x.shape[1] == self.planes:
            coef = self._affine(x)
            if coef is not None:
                return _apply_affine(x, *coef)
        if self.IN is None:
            return self.BN(x)  # type: ignore[misc]
        if self.BN is None:
            return self.IN(x)
        if self.in_first:
            a, b = torch.split(x, [self.n_in, self.n_bn], dim=1)
            return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)
        a, b = torch.split(x, [self.n_bn, self.n_in], dim=1)
        return torch.cat((self.BN(a.contiguous()), self.IN(b.contiguous())), dim=1)

    def _affine(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """The whole layer as per-(sample, channel) scale/shift, in channel order."""
        n = x.shape[0]
        k = self.n_in if self.in_first else self.n_bn
        parts: list[tuple[Tensor, Tensor] | None] = []
        for norm, lo, hi in ((self.IN, 0, k), (self.BN, k, self.planes)) if self.in_first else \
                ((self.BN, 0, k), (self.IN, k, self.planes)):
            if norm is None:
                continue
            parts.append(_in_affine(x[:, lo:hi], norm) if isinstance(norm, nn.InstanceNorm2d) else _bn_affine(norm, n))
        return _cat_affine(parts)

    def extra_repr(self) -> str:
        return f"planes={self.planes}, n_in={self.n_in}, in_first={self.in_first}"


class IBNCat(nn.Module):
    """IBN-c: IN and BN applied to *all* channels, outputs concatenated (``2 * planes`` out)."""

    out_multiplier = 2

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.IN = nn.InstanceNorm2d(planes, affine=True)
        self.BN = nn.BatchNorm2d(planes)

    def forward(self, x: Tensor) -> Tensor:
        if _fast_ok(self, x):
            coef = _cat_affine([_in_affine(x, self.IN), _bn_affine(self.BN, x.shape[0])])
            if coef is not None:  # IN and BN both read all of x: the input twice, one output
                return _apply_affine(torch.cat((x, x), 1), *coef)  # cat keeps x's memory format
        return torch.cat((self.IN(x), self.BN(x)), dim=1)


class PartialIN(nn.InstanceNorm2d):
    """IBN-d's layer after the addition: affine IN on the first ``int(C * ratio)`` channels,
    the remaining channels returned unchanged (no BN: they keep the block's own statistics)."""

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        n_in = int(planes * ratio)
        if n_in <= 0:
            raise ValueError(f"PartialIN needs at least one IN channel (planes={planes}, ratio={ratio})")
        super().__init__(n_in, affine=True)
        self.planes = planes

    def forward(self, x: Tensor) -> Tensor:
        if _fast_ok(self, x) and x.shape[1] == self.planes:
            coef = _in_affine(x[:, : self.num_features], self)
            if coef is not None:  # the untouched channels: scale 1, shift 0 (exact)
                rest = self.planes - self.num_features
                one = coef[0].new_ones(x.shape[0], rest)
                return _apply_affine(x, torch.cat((coef[0], one), 1), torch.cat((coef[1], one * 0), 1))
        if self.num_features == self.planes:
            return super().forward(x)
        a, b = torch.split(x, [self.num_features, self.planes - self.num_features], dim=1)
        return torch.cat((super().forward(a.contiguous()), b), dim=1)


def unsupported_reason(variant: str, block_norms: int) -> str | None:
    """Why ``variant`` cannot be built from blocks with ``block_norms`` residual-path norms, or None.

    The single rule: a x2 needs a second norm on the residual path that is not the last one
    (``bn2`` of a three-norm bottleneck); a two-norm BasicBlock has none.
    """
    v = (variant or "baseline").removeprefix("ibn_")
    if v == "a2" and block_norms < 3:
        return (
            f"IBN-a x2 adds IBN at a second norm of the residual path that is not its last one, and a "
            f"block with {block_norms} norms (BasicBlock) has none: bn1 is already IBN-a's and bn2 is "
            "the last norm, which stays BN (paper Sec. 3.2: IN there would misalign the residual "
            "with the identity path); use the IBN-a model or a bottleneck network (resnet50_ibn_a2)"
        )
    return None


def _groups(groups: Iterable[int] | int) -> tuple[int, ...]:
    if isinstance(groups, int):
        groups = (groups,)
    out = tuple(sorted({int(g) for g in groups}))
    if any(g < 1 or g > 4 for g in out):
        raise VariantError(f"ibn_groups are residual groups 1..4 (conv2_x..conv5_x), got {out}")
    return out


@dataclass(frozen=True)
class IBNConfig:
    """Where IN goes in a residual network: variant, IN ratio and residual groups.

    Build it with :meth:`from_args` (what model constructors do with their keyword arguments);
    ask it for norm layers with :meth:`stem_norm`, :meth:`block_norm`, :meth:`downsample_norm`
    and :meth:`after_add`.
    """

    variant: str = "baseline"
    ratio: float = 0.5
    full: bool = False
    a_groups: tuple[int, ...] = field(default_factory=tuple)  # groups with a/c-type residual IN
    b_groups: tuple[int, ...] = field(default_factory=tuple)  # groups with b/d-type IN after add

    @classmethod
    def from_args(
        cls,
        variant: str | IBNConfig = "baseline",
        ibn_ratio: Ratio | None = None,
        ibn_groups: Sequence[int] | int | None = None,
    ) -> IBNConfig:
        """The configuration for ``variant`` (``"a"`` or ``"ibn_a"``), with optional knobs.

        ``ibn_ratio``: fraction of channels each IBN layer instance-normalizes (0..1), or
        ``"full"`` to replace every BN by IN. ``ibn_groups``: residual groups (1..4) that get the
        variant's IN layers, e.g. ``(1, 2)``; ``()`` gives none (the plain network for a/c).
        """
        if isinstance(variant, IBNConfig):
            cfg = variant
        else:
            v = variant.removeprefix("ibn_") if variant else "baseline"
            if v in ("", "none", "bn"):
                v = "baseline"
            if v not in VARIANTS:
                raise VariantError(f"unknown IBN variant {variant!r}; known: {', '.join(VARIANTS)}")
            a = _DEFAULT_A_GROUPS if v in ("a", "c", "ad", "a2") else ()
            b = _DEFAULT_B_GROUPS if v in ("b", "d", "ad") else ()
            cfg = cls(variant=v, a_groups=a, b_groups=b)
        if ibn_ratio is not None:
            if isinstance(ibn_ratio, str):
                if ibn_ratio != "full":
                    raise VariantError(f"ibn_ratio is a number in [0, 1] or 'full', got {ibn_ratio!r}")
                cfg = replace(cfg, full=True)
            else:
                if not 0.0 <= float(ibn_ratio) <= 1.0:
                    raise VariantError(f"ibn_ratio must be in [0, 1], got {ibn_ratio}")
                if cfg.variant in ("baseline", "b", "c"):
                    raise VariantError(
                        f"ibn_ratio has no effect on variant {cfg.variant!r} (it sets the IN share "
                        "of the IBN layers of variants a, d, ad, a2)"
                    )
                cfg = replace(cfg, ratio=float(ibn_ratio))
        if ibn_groups is not None:
            g = _groups(ibn_groups)
            if cfg.variant == "baseline":
                raise VariantError("ibn_groups has no effect on the baseline (it has no IN layers)")
            cfg = replace(
                cfg,
                a_groups=g if cfg.variant in ("a", "c", "ad", "a2") else (),
                b_groups=g if cfg.variant in ("b", "d", "ad") else (),
            )
        return cfg

    # -- norm layers per position ------------------------------------------------------------
    @property
    def name(self) -> str:
        return "full_in" if self.full else ("baseline" if self.variant == "baseline" else f"ibn_{self.variant}")

    def stem_norm(self, planes: int) -> nn.Module:
        """The norm after the first convolution."""
        if self.full or self.variant == "b":
            return InstanceNorm2d(planes, affine=True)
        if self.variant in ("d", "ad"):
            return IBN(planes, self.ratio)
        return nn.BatchNorm2d(planes)

    def block_norm(self, index: int, planes: int, group: int, n_norms: int) -> nn.Module:
        """The ``index``-th (1-based) of the ``n_norms`` norms on the residual path of a block in
        ``group``. The last one (``index == n_norms``) is BN except in the "full" network; a
        variant that needs a position the block lacks raises :class:`VariantError`."""
        if self.full:
            return InstanceNorm2d(planes, affine=True)
        reason = unsupported_reason(self.variant, n_norms)
        if reason:
            raise VariantError(reason)
        if not 1 <= index <= n_norms:
            raise ValueError(f"norm index {index} outside 1..{n_norms}")
        if index == n_norms:  # the last norm of the residual path aligns it with the identity: BN
            return nn.BatchNorm2d(planes)
        in_group = group in self.a_groups
        if index == 1 and in_group and self.variant in ("a", "ad", "a2"):
            return IBN(planes, self.ratio)
        if index == 1 and in_group and self.variant == "c":
            return IBNCat(planes)
        if index == 2 and in_group and self.variant == "a2":
            return IBN(planes, self.ratio)
        return nn.BatchNorm2d(planes)

    def downsample_norm(self, planes: int) -> nn.Module:
        """The norm of a projection shortcut (identity path: IN only in the 'full' network)."""
        return InstanceNorm2d(planes, affine=True) if self.full else nn.BatchNorm2d(planes)

    def after_add(self, planes: int, group: int, last_in_group: bool) -> nn.Module | None:
        """The IN after the residual addition (b, d, ad), or ``None``."""
        if self.full or group not in self.b_groups or not last_in_group:
            return None
        if self.variant == "b":
            return InstanceNorm2d(planes, affine=True)
        if self.variant in ("d", "ad") and int(planes * self.ratio) > 0:
            return PartialIN(planes, self.ratio)
        return None

    def norm(self, planes: int, group: int | None = None) -> nn.Module:
        """A generic norm for non-residual networks: IBN in the a-groups, else BN.

        (For families without residual blocks, e.g. small plain CNNs: ``group`` is the stage.)
        """
        if self.full:
            return InstanceNorm2d(planes, affine=True)
        if group is not None and group in self.a_groups and self.variant in ("a", "ad", "a2"):
            return IBN(planes, self.ratio)
        return nn.BatchNorm2d(planes)


def norm_out_channels(norm: nn.Module, planes: int) -> int:
    """Channels a norm layer outputs for ``planes`` inputs (2x for :class:`IBNCat`)."""
    return planes * getattr(norm, "out_multiplier", 1)


def is_instance_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.InstanceNorm2d)

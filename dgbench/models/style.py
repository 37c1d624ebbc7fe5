"""The CycleGAN ResNet generator (Zhu et al., ICCV 2017) that renders the Monet shift.

Architecture and parameter names follow the CycleGAN authors' ``ResnetGenerator``
(junyanz/pytorch-CycleGAN-and-pix2pix, ``--netG resnet_9blocks --norm instance``), so their
``latest_net_G.pth`` files (e.g. the pretrained ``style_monet`` model) load unchanged: one
``nn.Sequential`` named ``model`` whose indices are

    0 ReflectionPad2d(3), 1 Conv2d(3, ngf, 7), 2 IN, 3 ReLU,
    4 Conv2d(ngf, 2ngf, 3, s2), 5 IN, 6 ReLU, 7 Conv2d(2ngf, 4ngf, 3, s2), 8 IN, 9 ReLU,
    10 .. 9+n_blocks  ResnetBlock(4ngf): conv_block = [ReflectionPad2d(1), Conv2d, IN, ReLU,
                                                       ReflectionPad2d(1), Conv2d, IN]
    ConvTranspose2d(4ngf, 2ngf, 3, s2, p1, op1), IN, ReLU, ConvTranspose2d(2ngf, ngf, ...), IN, ReLU,
    ReflectionPad2d(3), Conv2d(ngf, 3, 7), Tanh

with InstanceNorm2d without affine parameters or running statistics, and biases on every
convolution (the authors set ``use_bias`` when the norm is instance norm). Keys are therefore
``model.1.weight``, ``model.10.conv_block.1.weight``, ``model.26.bias`` for 9 blocks.

Checkpoints saved by PyTorch < 0.4 carry ``running_mean``/``running_var`` (and later
``num_batches_tracked``) for the instance norms; they are meaningless for IN without running stats
and are dropped, as the authors' own loader does.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from .state_fit import describe_state_dict
from .weights import fetch, load_state_dict_strict, read_state_dict, sha256_file

_LEGACY_IN_KEYS = ("running_mean", "running_var", "num_batches_tracked")


def _norm(ch: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Residual block: x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN generator: images in [-1, 1] -> images in [-1, 1] (same size if divisible by 4)."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9, in_ch: int = 3, out_ch: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(2):  # two stride-2 downsamplings
            m = 2**i
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), _norm(ngf * m * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # two stride-2 transposed convolutions back to full size
            m = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                _norm(ngf * m // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.ngf, self.n_blocks = ngf, n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop legacy instance-norm statistics and a DataParallel ``module.`` prefix."""
    out = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.rsplit(".", 1)[-1] in _LEGACY_IN_KEYS:
            continue  # only norms carry these, and the generator's norms are stat-free IN
        out[k] = v
    return out


def infer_arch(state: dict[str, torch.Tensor], origin: str = "state dict") -> tuple[int, int]:
    """``(ngf, n_blocks)`` from a generator state dict in the authors' key layout."""
    if "model.1.weight" not in state:
        raise CheckpointError(f"{origin}: not a CycleGAN ResnetGenerator state dict (no key 'model.1.weight'); "
                              f"it holds {describe_state_dict(state)}")
    ngf = int(state["model.1.weight"].shape[0])
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    return ngf, len(blocks)


def load_style_generator(path_or_url: str | os.PathLike, map_location: str | torch.device = "cpu") -> ResnetGenerator:
    """Load a CycleGAN ResNet generator (e.g. the authors' ``style_monet`` ``latest_net_G.pth``).

    The architecture (filters, number of blocks) is read from the keys; legacy instance-norm
    running statistics are dropped; loading is strict and ``weights_only``. The returned module is
    in eval mode, maps images in [-1, 1] to [-1, 1], and carries ``sha256`` (of the file) and
    ``source``.
    """
    s = str(path_or_url)
    # The download goes through the zoo's loader: torch hub's cache, DGBENCH_OFFLINE honoured.
    path = fetch(s) if s.startswith(("http://", "https://", "file://")) else Path(s).expanduser()
    if not path.is_file():
        raise CheckpointError(f"style generator weights not found: {path}")
    state = read_state_dict(path)  # weights_only=True; unwraps {"state_dict": ...}
    state = clean_state_dict(state)
    ngf, n_blocks = infer_arch(state, str(path))
    gen = ResnetGenerator(ngf=ngf, n_blocks=n_blocks)
    load_state_dict_strict(gen, state, str(path), new_head_ok=False)
    gen.to(map_location).eval()
    gen.sha256 = sha256_file(path)  # type: ignore[assignment]
    gen.source = s  # type: ignore[assignment]
    return gen


@torch.no_grad()
def stylize_batch(gen: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """Render uint8 crops ``[B, 3, H, W]`` through the generator; uint8 out, same size.

    Input mapping as the authors' test script (``ToTensor`` + ``Normalize(0.5, 0.5)``:
    ``x = u / 127.5 - 1``). Sizes not divisible by 4 are reflect-padded so the two stride-2 stages
    invert exactly, and cropped back. Output ``round(127.5 * (y + 1))`` clamped to 0..255 (the
    authors' ``tensor2im`` truncates instead of rounding; rounding is the unbiased choice).
    """
    dev = next(gen.parameters()).device
    x = u.to(dev).float() / 127.5 - 1.0
    h, w = x.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
    y = gen(x)[..., :h, :w]
    return ((y + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()

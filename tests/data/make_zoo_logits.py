"""Reference logits of the deep zoo models, so a change in their numerics fails a test.

Every model of :data:`MODELS` is built on the meta device, materialized, and given weights and
norm statistics that depend only on each tensor's *name* and shape (a generator seeded by the
name's CRC32), so neither the order in which a model creates its layers nor torch's default
initialization matters: only what the forward pass computes. A seeded input (2 images, 64x64)
goes through the model in eval mode; the 2x10 logits are stored in ``zoo_logits.json`` beside
this file (a few KB). ``tests/test_zoo_outputs.py`` recomputes and compares them.

Regenerate (only when a change of the numerics is intended, and say why in the commit):

    PYTHONPATH=. python tests/data/make_zoo_logits.py
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "zoo_logits.json"
# The authors' released IBN models (ResNet, ResNeXt, SE-ResNet, DenseNet) and the paper's other
# ResNet-50 variants (Table 3).
MODELS = (
    "resnet50_ibn_a", "resnet50_ibn_b", "resnet50_ibn_c", "resnet50_ibn_d", "resnet50_ibn_ad",
    "resnet50_ibn_a2", "resnet101_ibn_a", "resnet101_ibn_b", "resnext101_ibn_a", "se_resnet101_ibn_a",
    "densenet121_ibn_a", "densenet169_ibn_a",
)
NUM_CLASSES = 10
INPUT_SHAPE = (2, 3, 64, 64)
INPUT_SEED = 1234


def _gen(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def fill_by_name(model: nn.Module) -> nn.Module:
    """Deterministic weights from each tensor's name: variance-preserving convolutions and linears
    (so 100 layers neither explode nor vanish), norm scales in [0.5, 1.5], small biases and
    running means, running variances in [0.5, 1.5]."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            g = _gen(name)
            leaf = name.rsplit(".", 1)[-1]
            if not t.is_floating_point():
                t.zero_()  # num_batches_tracked: unused in eval mode
            elif leaf == "weight" and t.dim() > 1:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(1.0 / fan_in))
            elif leaf in ("weight", "running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:  # biases and running means
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model


def build(name: str) -> nn.Module:
    from dgbench.models import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=NUM_CLASSES)
    return fill_by_name(model.to_empty(device="cpu")).eval()


def seeded_input() -> torch.Tensor:
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED))


def logits(name: str) -> torch.Tensor:
    with torch.no_grad():
        return build(name)(seeded_input())


def main() -> None:
    torch.set_num_threads(1)
    ref = {
        "input": {"shape": list(INPUT_SHAPE), "seed": INPUT_SEED},
        "torch": torch.__version__,
        "logits": {name: [[float(f"{v:.8g}") for v in row] for row in logits(name).tolist()] for name in MODELS},
    }
    OUT.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(MODELS)} models)")


if __name__ == "__main__":
    main()

"""Domain-generalization algorithms and their hyperparameter distributions (DomainBed's contract, small).

An :class:`Algorithm` owns a network and its optimizer; each training step it gets one minibatch
per training domain (``update``) and at evaluation it predicts (``predict``). That is all the
trainer calls, so a method that changes what a step does is one subclass added to
:data:`ALGORITHMS`: :class:`ERM`, and :class:`MixStyle` (feature statistics mixed across the
domains' images, 25 lines) as the example of one more.

Hyperparameters (:func:`hparams`): set 0 is the defaults; set ``h > 0`` is a seeded random draw
from DomainBed's distributions (``domainbed/hparams_registry.py``), one generator per
(algorithm, set, trial, name) so adding a hyperparameter does not move the others:

* ``lr``: default 5e-5, ``10**U(-5, -3.5)``; small images (the built-in 16-pixel digits, as
  DomainBed's MNIST sets): default 1e-3, ``10**U(-4.5, -2.5)``;
* ``batch_size`` (per training domain): default 32, ``int(2**U(3, 5.5))``; small images: default
  64, ``int(2**U(3, 9))``;
* ``weight_decay``: default 0, ``10**U(-6, -2)``; small images: 0 always;
* ``resnet_dropout`` (dropout before the classifier): default 0, a choice of 0, 0.1, 0.5;
* ImageNet-sized images only, fixed as in DomainBed: ``data_augmentation`` (its training
  transform, :mod:`.dg_augment`) and ``freeze_bn`` (DomainBed's ResNet keeps every BatchNorm in
  eval mode while training: running statistics stay the ImageNet ones; the affine weights still
  learn; instance normalization, IBN's IN half included, is not BatchNorm and is untouched). The
  small-image sets (DomainBed's MNIST family, the built-in digits) train from scratch with
  neither.

Optimizer: Adam (DomainBed's ERM), on every parameter.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DgbenchError

Draw = Callable[[np.random.RandomState], Any]
Minibatches = list[tuple[Tensor, Tensor]]


def _base_space(small_images: bool) -> dict[str, tuple[Any, Draw]]:
    """``{name: (default, draw)}``: DomainBed's distributions for ERM (see the module docstring)."""
    if small_images:
        return {"lr": (1e-3, lambda r: float(10 ** r.uniform(-4.5, -2.5))),
                "batch_size": (64, lambda r: int(2 ** r.uniform(3, 9))),
                "weight_decay": (0.0, lambda r: 0.0),
                "resnet_dropout": (0.0, lambda r: float(r.choice([0.0, 0.1, 0.5])))}
    return {"lr": (5e-5, lambda r: float(10 ** r.uniform(-5, -3.5))),
            "batch_size": (32, lambda r: int(2 ** r.uniform(3, 5.5))),
            "weight_decay": (0.0, lambda r: float(10 ** r.uniform(-6, -2))),
            "resnet_dropout": (0.0, lambda r: float(r.choice([0.0, 0.1, 0.5]))),
            "data_augmentation": (True, lambda r: True),
            "freeze_bn": (True, lambda r: True)}


class Algorithm(nn.Module):
    """One way of training on several domains: ``update`` a step, ``predict`` logits."""

    name: ClassVar[str]

    def __init__(self, network: nn.Module, hp: dict[str, Any]):
        super().__init__()
        self.network, self.hp = network, dict(hp)
        p = float(hp.get("resnet_dropout", 0.0))
        if p > 0 and isinstance(getattr(network, "fc", None), nn.Linear):  # dropout before the classifier
            network.fc = nn.Sequential(nn.Dropout(p), network.fc)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])

    def train(self, mode: bool = True) -> Algorithm:
        super().train(mode)
        if mode and self.hp.get("freeze_bn"):
            for m in self.network.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    @classmethod
    def space(cls, small_images: bool) -> dict[str, tuple[Any, Draw]]:
        """The algorithm's hyperparameters: ``{name: (default, draw)}`` (subclasses add theirs)."""
        return _base_space(small_images)

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, x: Tensor) -> Tensor:
        return self.network(x)


class ERM(Algorithm):
    """Empirical risk minimization: cross-entropy on the training domains' batches, concatenated."""

    name = "erm"

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        loss = nn.functional.cross_entropy(self.predict(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}


class MixStyle(ERM):
    """ERM with MixStyle (Zhou et al., ICLR 2021): while training, after the first two residual
    groups (``layer1``, ``layer2``), with probability ``mixstyle_p`` each image's channel means and
    deviations are replaced by a Beta(``mixstyle_alpha``)-weighted mix of its own and those of a
    random other image of the batch, which holds every training domain. A no-op at evaluation.
    Its two hyperparameters are fixed at the paper's values (no random draw)."""

    name = "mixstyle"
    LAYERS = ("layer1", "layer2")

    @classmethod
    def space(cls, small_images: bool) -> dict[str, tuple[Any, Draw]]:
        return {**super().space(small_images), "mixstyle_p": (0.5, lambda r: 0.5),
                "mixstyle_alpha": (0.1, lambda r: 0.1)}

    def __init__(self, network: nn.Module, hp: dict[str, Any]):
        super().__init__(network, hp)
        alpha = float(hp["mixstyle_alpha"])
        self.beta = torch.distributions.Beta(alpha, alpha)
        for layer in self.LAYERS:
            getattr(network, layer).register_forward_hook(self._mix)

    def _mix(self, module: nn.Module, inputs: Any, out: Tensor) -> Tensor:
        if not self.training or float(torch.rand(1)) > float(self.hp["mixstyle_p"]):
            return out
        mu = out.mean((2, 3), keepdim=True).detach()
        sig = (out.var((2, 3), keepdim=True) + 1e-6).sqrt().detach()
        lam = self.beta.sample((out.size(0), 1, 1, 1)).to(out.device)
        perm = torch.randperm(out.size(0))
        return (out - mu) / sig * (lam * sig + (1 - lam) * sig[perm]) + lam * mu + (1 - lam) * mu[perm]


ALGORITHMS: dict[str, type[Algorithm]] = {ERM.name: ERM, MixStyle.name: MixStyle}


def algorithm_class(name: str) -> type[Algorithm]:
    if name.lower() not in ALGORITHMS:
        raise DgbenchError(f"unknown algorithm {name!r} (known: {', '.join(ALGORITHMS)})")
    return ALGORITHMS[name.lower()]


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


def hparams(algorithm: str, hparams_seed: int, trial: int, small_images: bool) -> dict[str, Any]:
    """Hyperparameter set ``hparams_seed`` of ``algorithm`` in ``trial`` (0: the defaults)."""
    space = algorithm_class(algorithm).space(small_images)
    if hparams_seed == 0:
        return {k: d for k, (d, _) in space.items()}
    return {k: draw(np.random.RandomState(_seed(algorithm, hparams_seed, trial, k))) for k, (_, draw) in space.items()}

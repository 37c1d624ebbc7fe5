"""Feature divergence of Section 4.3 (Eq. 1-3 of the IBN-Net paper), computed from streamed moments.

For one layer, ``F_i`` is the spatial mean of channel ``i`` of the layer's output for one image.
Each domain's ``F_i`` is modelled as a Gaussian ``N(mu_i, sigma_i^2)`` (mean and variance over the
domain's images); the divergence of the layer is the symmetric KL divergence of the two Gaussians,
averaged over the ``C`` channels:

    KL(A||B) = log(sigma_B / sigma_A) + (sigma_A^2 + (mu_A - mu_B)^2) / (2 sigma_B^2) - 1/2
    D(A||B)  = KL(A||B) + KL(B||A)                (Eq. 1-2, in nats)
    D(L)     = (1 / C) sum_i D(F_iA || F_iB)      (Eq. 3)

The variances are the population variances (divide by n) of the domain's images. A channel whose
``F`` is constant in a domain (a dead ReLU channel, or an instance-normalized one) has variance 0,
where KL is undefined; :data:`VAR_FLOOR` is added to both variances, so such a channel contributes
exactly 0 when both domains agree on its value, and a large (but finite) term when they do not.

:class:`Moments` accumulates count, mean and the sum of squared deviations per channel (float64,
Welford/Chan updates), so no feature is ever kept; :func:`merge` combines two partial moments (the
parallel form of Chan et al.), which is how ranks' moments are joined.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

VAR_FLOOR = 1e-8  # added to both variances (units of F^2): a constant channel must not divide by 0


@dataclass
class Moments:
    """Per-channel count, mean and M2 (sum of squared deviations) of ``F`` over images, float64."""

    count: float
    mean: torch.Tensor  # [C] float64
    m2: torch.Tensor  # [C] float64

    @classmethod
    def empty(cls, channels: int) -> Moments:
        z = torch.zeros(channels, dtype=torch.float64)
        return cls(0.0, z, z.clone())

    @classmethod
    def of(cls, f: torch.Tensor) -> Moments:
        """The moments of a batch ``f`` [N, C] (two passes over the batch, in float64)."""
        f = f.detach().to("cpu", torch.float64)
        mean = f.mean(0) if len(f) else torch.zeros(f.shape[1], dtype=torch.float64)
        return cls(float(len(f)), mean, ((f - mean) ** 2).sum(0))

    def update(self, f: torch.Tensor) -> None:
        """Add a batch ``f`` [N, C] of per-image channel means."""
        joined = merge(self, Moments.of(f))
        self.count, self.mean, self.m2 = joined.count, joined.mean, joined.m2

    @property
    def var(self) -> torch.Tensor:
        """Population variance per channel (divide by n)."""
        return self.m2 / self.count if self.count else torch.full_like(self.m2, float("nan"))

    def as_tensor(self) -> torch.Tensor:
        """``[1 + 2C]``: count, mean, m2 (what ranks exchange)."""
        return torch.cat([torch.tensor([self.count], dtype=torch.float64), self.mean, self.m2])

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> Moments:
        c = (len(t) - 1) // 2
        return cls(float(t[0]), t[1:1 + c].clone(), t[1 + c:].clone())


def merge(a: Moments, b: Moments) -> Moments:
    """The moments of the union of two disjoint sets of images (Chan et al.'s pairwise update)."""
    if b.count == 0:
        return Moments(a.count, a.mean.clone(), a.m2.clone())
    if a.count == 0:
        return Moments(b.count, b.mean.clone(), b.m2.clone())
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    m2 = a.m2 + b.m2 + delta ** 2 * (a.count * b.count / n)
    return Moments(n, mean, m2)


def gaussian_kl(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_a, var_a) || N(mu_b, var_b)) elementwise, in nats (Eq. 2)."""
    return 0.5 * torch.log(var_b / var_a) + (var_a + (mu_a - mu_b) ** 2) / (2 * var_b) - 0.5


def symmetric_kl(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor) -> torch.Tensor:
    """D(A||B) = KL(A||B) + KL(B||A) elementwise, in nats (Eq. 1)."""
    return gaussian_kl(mu_a, var_a, mu_b, var_b) + gaussian_kl(mu_b, var_b, mu_a, var_a)


def layer_divergence(a: Moments, b: Moments, var_floor: float = VAR_FLOOR) -> float:
    """Eq. 3: the channel-averaged symmetric KL of two domains' moments at one layer, in nats."""
    if a.count < 1 or b.count < 1:
        raise ValueError("each domain needs at least one image")
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"the domains' layers differ in channels ({a.mean.numel()} vs {b.mean.numel()})")
    d = symmetric_kl(a.mean, a.var + var_floor, b.mean, b.var + var_floor)
    return float(d.mean())

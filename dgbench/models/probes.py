"""Where the feature-divergence analysis looks inside a network: its probes.

A probe is a named module whose output the analysis reads. For the residual networks of the zoo
(:class:`~dgbench.models.resnet.ResNet`: ResNet, ResNeXt, SE-ResNet, the small digit nets) the
probes are the paper's "ReLU layers on the main path": the ReLU after the stem (``stem``, before
the max-pool) and the output of every residual block (``layer1.0`` ... , each ending in its ReLU).
ResNet-50 has 1 + 16 = 17, as in Fig. 5; the small digit nets 1 + 4 = 5. Names follow the
state-dict keys, so the tables of two models with the same depth line up.

Each probe also says whether instance normalization acts inside it (``has_in``: an
``InstanceNorm2d`` among the stem's norm or the block's modules), which the plot marks.

Another network can name its own probes with a ``divergence_probes()`` method returning
``[(name, module), ...]`` in forward order, or ``(name, module, has_in)`` where IN acts before the
probed module rather than inside it.

:class:`SpatialMeans` registers forward hooks that reduce each probe's output ``[N, C, H, W]`` to
its per-channel spatial means ``[N, C]`` (float64) as the forward runs: nothing else is kept.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import DgbenchError


@dataclass(frozen=True)
class Probe:
    index: int  # position along the main path, 1-based (Fig. 5's x axis)
    name: str
    module: nn.Module
    has_in: bool


def _has_in(*modules: nn.Module | None) -> bool:
    return any(isinstance(m, nn.InstanceNorm2d) for mod in modules if mod is not None for m in mod.modules())


def _residual_probes(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    out = [("stem", model.relu, _has_in(model.conv1, model.bn1))]
    for g in range(1, int(model.num_groups) + 1):
        for i, block in enumerate(getattr(model, f"layer{g}")):
            out.append((f"layer{g}.{i}", block, _has_in(block)))
    return out


def find_probes(model: nn.Module) -> list[Probe]:
    """The probes of ``model`` in forward order (see the module docstring)."""
    custom = getattr(model, "divergence_probes", None)
    if callable(custom):
        named = [(str(t[0]), t[1], bool(t[2]) if len(t) > 2 else _has_in(t[1])) for t in custom()]
    elif all(hasattr(model, a) for a in ("conv1", "bn1", "relu", "num_groups", "layer1")):
        named = _residual_probes(model)
    else:
        name = getattr(model, "dgbench_name", type(model).__name__)
        raise DgbenchError(
            f"model {name}: the divergence analysis probes residual networks (stem + every block); "
            "give another network a divergence_probes() method returning [(name, module), ...]")
    if not named:
        raise DgbenchError("divergence_probes() returned no probes")
    return [Probe(i, n, m, has) for i, (n, m, has) in enumerate(named, 1)]


class SpatialMeans:
    """Forward hooks collecting each probe's per-channel spatial means for the current batch.

    Use as a context manager; after each forward, :meth:`take` returns ``{probe name: [N, C]
    float64}`` and clears the batch. A probe module called twice in one forward (a shared ReLU
    reused elsewhere) is an error, since its output would be ambiguous.
    """

    def __init__(self, probes: list[Probe]):
        self.probes = probes
        self._batch: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str):
        def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if name in self._batch:
                raise DgbenchError(f"probe {name} ran twice in one forward pass; name the probes with "
                                   "divergence_probes()")
            if out.dim() != 4:
                raise DgbenchError(f"probe {name}: expected a [N, C, H, W] output, got {tuple(out.shape)}")
            self._batch[name] = out.detach().mean(dim=(2, 3), dtype=torch.float64).cpu()
        return hook

    def __enter__(self) -> SpatialMeans:
        self._handles = [p.module.register_forward_hook(self._hook(p.name)) for p in self.probes]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self) -> dict[str, torch.Tensor]:
        missing = [p.name for p in self.probes if p.name not in self._batch]
        if missing:
            raise DgbenchError(f"probes {', '.join(missing)} did not run in the forward pass")
        out, self._batch = self._batch, {}
        return out

    def __iter__(self) -> Iterator[Probe]:
        return iter(self.probes)

"""Benchmark: the divergence protocol's streamed statistics vs keeping every F vs the forward floor.

Times, in one process, on the same device, model and pre-made normalized batches:

1. **dgbench**: forward with :class:`dgbench.models.probes.SpatialMeans` hooks and a float64
   :class:`dgbench.metrics.divergence.Moments` update per probe and batch (what a pass does per
   batch, data loading aside);
2. **peer**: the same hooks, but every image's per-channel means ``F`` kept in a list and the
   mean/variance computed at the end in two passes (the non-streaming way);
3. **floor**: the forward alone.

Printed: images/s of each (median of ``--repeats`` interleaved runs), the ratios dgbench/floor and
dgbench/peer, the memory the peer keeps per image, and the largest difference between the two
ways' variances (they must agree). Random weights (speed does not depend on them).

    python benchmarks/divergence_bench.py --model resnet50 --size 224 --batches 4 --batch-size 16
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import dgbench
    from dgbench.metrics.divergence import Moments
    from dgbench.models.probes import SpatialMeans, find_probes

    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = dgbench.create_model(args.model).eval().to(dev)
    probes = find_probes(model)
    batches = [torch.randn(args.batch_size, 3, args.size, args.size, device=dev) for _ in range(args.batches)]
    n = args.batches * args.batch_size

    def floor() -> None:
        with torch.inference_mode():
            for x in batches:
                model(x)

    def streamed() -> dict[str, Moments]:
        moments = {p.name: None for p in probes}
        with SpatialMeans(probes) as hooks, torch.inference_mode():
            for x in batches:
                model(x)
                for name, f in hooks.take().items():
                    m = moments[name] or Moments.empty(f.shape[1])
                    m.update(f)
                    moments[name] = m
        return moments  # type: ignore[return-value]

    def kept() -> dict[str, torch.Tensor]:
        store: dict[str, list[torch.Tensor]] = {p.name: [] for p in probes}
        with SpatialMeans(probes) as hooks, torch.inference_mode():
            for x in batches:
                model(x)
                for name, f in hooks.take().items():
                    store[name].append(f)
        return {k: torch.cat(v).var(0, unbiased=False) for k, v in store.items()}

    times: dict[str, list[float]] = {"dgbench": [], "peer": [], "floor": []}
    for _ in range(args.repeats):  # interleaved, so background load hits all three alike
        for name, fn in (("dgbench", streamed), ("peer", kept), ("floor", floor)):
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "dgbench":
                mom = out
            elif name == "peer":
                var = out
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    diff = max(float((mom[p.name].var - var[p.name]).abs().max()) for p in probes)  # type: ignore[index]
    channels = sum(mom[p.name].mean.numel() for p in probes)  # type: ignore[index]
    print(f"{args.model} {args.size}px, {len(probes)} probes, {channels} channels, {n} images x {args.repeats} repeats on {dev}")
    for k in ("dgbench", "peer", "floor"):
        print(f"  {k:8s} {rate[k]:8.1f} img/s (median)")
    print(f"  dgbench/floor {rate['dgbench'] / rate['floor']:.3f}   dgbench/peer {rate['dgbench'] / rate['peer']:.3f}")
    print(f"  the peer keeps {channels * 8} bytes per image ({channels * 8 * 50_000 / 2**30:.2f} GiB for ImageNet val); "
          f"dgbench keeps {3 * channels * 8} bytes in all")
    print(f"  max |var difference| between the two ways: {diff:.3g}")


if __name__ == "__main__":
    main()

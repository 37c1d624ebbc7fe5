"""Benchmark: forward throughput of the IBN variants against plain ResNet-50, in one process.

For each precision, times ``model(x)`` (eval, inference mode, channels_last unless
``--no-channels-last``) of plain ResNet-50 and of the IBN variants, each IBN model twice: with
the default eval-mode path of :mod:`dgbench.models.ibn` (the one-pass inference path; on the CPU
at half precision that is the generic path itself) and with the generic path forced
(``reference_layers()``: split, ``nn.InstanceNorm2d``, cat). The models are timed in
interleaved rounds (one batch each per round, ``--repeats`` rounds) so that background load hits
them alike; printed: median images/s and the ratio to plain ResNet-50.

Before timing, each fast path is checked against its reference path on the same input
(relative L2 difference of the logits), so a fast but wrong path cannot be reported.

    python benchmarks/ibn_bench.py --batch-size 16 --repeats 15 --precisions fp32
    python benchmarks/ibn_bench.py --device cuda --batch-size 256 --repeats 30 --precisions fp32,bf16
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from _bench import sync
from dgbench.runtime import autocast


def timed(fn, device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,resnet50_ibn_a,resnet50_ibn_b")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models (compile time printed)")
    args = ap.parse_args()

    import dgbench
    from dgbench.models.ibn import reference_layers
    from dgbench.runtime import set_precision

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fmt = torch.contiguous_format if args.no_channels_last else torch.channels_last
    names = args.models.split(",")
    torch.manual_seed(0)
    models = {n: dgbench.create_model(n, pretrained=False).eval().to(device).to(memory_format=fmt) for n in names}
    base = names[0]
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads, batch {args.batch_size}, "
          f"{'NCHW' if args.no_channels_last else 'channels_last'}; median of {args.repeats} interleaved rounds")
    for precision in args.precisions.split(","):
        set_precision(precision)
        x = torch.randn(args.batch_size, 3, 224, 224, device=device).contiguous(memory_format=fmt)
        variants = {}
        for n, m in models.items():
            variants[n] = (m, contextlib.nullcontext)
            if n != base:
                variants[n + " (generic)"] = (m, reference_layers)
            if args.compile:
                variants[n + " (compiled)"] = (torch.compile(m, dynamic=False), contextlib.nullcontext)
        with torch.inference_mode(), autocast(device, precision):
            for n, m in models.items():  # correctness first, and warm-up
                fast = m(x).float()
                with reference_layers():
                    ref = m(x).float()
                diff = ((fast - ref).norm() / ref.norm()).item()
                print(f"  [{precision}] {n}: fast vs generic logits, relative L2 = {diff:.2e}")
            for k, (m, _) in variants.items():
                if k.endswith("(compiled)"):
                    t0 = time.perf_counter()
                    out = m(x).float()
                    ref = models[k.removesuffix(" (compiled)")](x).float()
                    print(f"  [{precision}] {k}: first call (compilation) {time.perf_counter() - t0:.1f} s, "
                          f"logits vs eager relative L2 = {((out - ref).norm() / ref.norm()).item():.2e}")
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.repeats):
                for k, (m, ctx) in variants.items():
                    with ctx():
                        times[k].append(timed(lambda m=m: m(x), device))
        ips = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
        print(f"\n[{precision}]  {'model':<28} {'images/s':>9} {'vs ' + base:>14}")
        for k, v in ips.items():
            print(f"  {k:<34} {v:>9.2f} {v / ips[base]:>13.3f}x")


if __name__ == "__main__":
    main()

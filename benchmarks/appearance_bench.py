"""Benchmark: dgbench's appearance-lite protocol vs the authors'-style evaluation vs the forward floor.

Builds a synthetic ImageNet-layout tree (``--images`` JPEGs of 500x375 in synset folders), then
times, in one process, on the same device and model, for each precision:

1. **dgbench**: ``run_protocol(model, "appearance-lite")`` (one decode per image, four shifts
   applied on the batch, four forwards), nothing stored; wall-clock of the whole call.
2. **baseline**, in the style of the authors' evaluation script: torchvision ``ImageFolder`` with
   PIL transforms (``Resize(256)``, ``CenterCrop(224)``, ``ToTensor``, the shift, ``Normalize``), one
   full pass over the data per shift (so every image is decoded four times).
3. **floor**: the forward passes alone, on pre-decoded, pre-shifted, pre-normalized tensors.

Printed per precision: images/s for each (images through all four shifts per second), ratios
dgbench/baseline and floor/dgbench, and achieved GFLOP/s (FLOPs = 2 x multiply-adds, counted with
torch's FlopCounterMode) against the machine's measured matmul peak at that precision. Each figure
is the median of ``--repeats`` runs, interleaved so background load hits all three alike. Models
have random weights (speed does not depend on them); as a cross-check the baseline's top-1 errors
are compared with dgbench's.

    python benchmarks/appearance_bench.py --images 256 --repeats 3 --precisions fp32,bf16
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _bench import authors_transforms
from dgbench.runtime import autocast

SHIFTS = ("origin", "rgb+50", "r+50", "std-x1.5")


def build_tree(root: Path, n: int, classes: int = 32) -> Path:
    from dgbench.data.imagenet import synsets

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(1, n + 1):
        c = synsets()[(i * 7) % classes * (1000 // classes)]
        path = root / c / f"ILSVRC2012_val_{i:08d}.JPEG"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # photo-like content: smooth gradients plus texture, so JPEG sizes are realistic
        base = np.stack([(xx * (1 + i % 3) + i * 11) % 256, (yy * (1 + i % 5) + i * 7) % 256, ((xx + yy) + i * 3) % 256], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path, quality=90)
    return root


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul at ``dtype`` (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def flops_per_image(model: torch.nn.Module, size: int = 224) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return float(fc.get_total_flops())


def run_dgbench(model, tree: Path, precision: str, batch_size: int, workers: int) -> tuple[float, dict[str, float]]:
    from dgbench.protocols.appearance import run_protocol

    t = time.perf_counter()
    summary = run_protocol(model, "appearance-lite", data=tree, store=False, progress=False, batch_size=batch_size,
                           workers=workers, precision=precision, pretrained=False, device="cpu")
    dt = time.perf_counter() - t
    return dt, {r["shift"]: r["metrics"]["top1_err"] for r in summary.records}


def run_baseline(model, tree: Path, precision: str, batch_size: int, workers: int) -> tuple[float, dict[str, float]]:
    """The authors' style: ImageFolder + PIL transforms, one full pass per shift."""
    from torchvision import datasets

    from dgbench.data.imagenet import synset_index

    mean, std = model.pretrained_cfg.mean, model.pretrained_cfg.std
    errors = {}
    t = time.perf_counter()
    for shift in SHIFTS:
        ds = datasets.ImageFolder(str(tree), transform=authors_transforms(shift, mean, std))
        to_canonical = torch.tensor([synset_index()[c] for c in ds.classes])
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False)
        correct = n = 0
        with torch.inference_mode(), autocast(torch.device("cpu"), precision):
            for x, y in loader:
                pred = model(x).argmax(1)
                correct += int((pred == to_canonical[y]).sum())
                n += len(y)
        errors[shift] = 100.0 * (1 - correct / n)
    return time.perf_counter() - t, errors


def predecode(model, tree: Path) -> list[torch.Tensor]:
    """Every shift's normalized input, fully materialized (not timed)."""
    from dgbench.data.base import Preprocess
    from dgbench.data.imagenet import ImageNetVal
    from dgbench.protocols import get_shift
    from dgbench.shifts import AffineBatchShift

    ds = ImageNetVal(tree, Preprocess.from_cfg(model.pretrained_cfg))
    u = torch.stack([ds[i][0] for i in range(len(ds))]).float()
    cfg = model.pretrained_cfg
    return [AffineBatchShift(get_shift(s), cfg.mean, cfg.std, torch.device("cpu"))(u) for s in SHIFTS]


def run_floor(model, inputs: list[torch.Tensor], precision: str, batch_size: int, channels_last: bool = True) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = [[x[i:i + batch_size].contiguous(memory_format=fmt) for i in range(0, len(x), batch_size)] for x in inputs]
    t = time.perf_counter()
    with torch.inference_mode(), autocast(torch.device("cpu"), precision):
        for per_shift in batches:
            for xb in per_shift:
                model(xb)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tree", type=Path, default=None, help="where to build (or reuse) the synthetic tree")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import dgbench

    torch.manual_seed(0)
    model = dgbench.create_model(args.model).eval()
    tree = build_tree(args.tree or Path(tempfile.mkdtemp(prefix="dgbench-bench-")) / "val", args.images)
    n, k = args.images, len(SHIFTS)
    flops = flops_per_image(model)
    print(f"model {args.model}: {flops / 1e9:.2f} GFLOP per 224px image (2 x MAC); {n} images of 500x375 in {tree}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch_size}, {args.workers} worker(s); "
          f"median of {args.repeats} interleaved repeats; shifts: {', '.join(SHIFTS)}")
    inputs = predecode(model, tree)
    results = {}
    for precision in args.precisions.split(","):
        peak = matmul_peak(torch.float32 if precision == "fp32" else torch.bfloat16 if precision == "bf16" else torch.float16)
        model_cl = model.to(memory_format=torch.channels_last)
        run_floor(model_cl, [x[: args.batch_size] for x in inputs[:1]], precision, args.batch_size)  # warm-up
        times = {"dgbench": [], "baseline": [], "floor": []}
        errs = {}
        for _ in range(args.repeats):
            dt, errs["dgbench"] = run_dgbench(model, tree, precision, args.batch_size, args.workers)
            times["dgbench"].append(dt)
            dt, errs["baseline"] = run_baseline(model, tree, precision, args.batch_size, args.workers)
            times["baseline"].append(dt)
            times["floor"].append(run_floor(model_cl, inputs, precision, args.batch_size))
        med = {m: statistics.median(v) for m, v in times.items()}
        ips = {m: n / t for m, t in med.items()}
        gflops = {m: n * k * flops / t / 1e9 for m, t in med.items()}
        same = all(abs(errs["dgbench"][s] - errs["baseline"][s]) < 1e-9 for s in SHIFTS)
        results[precision] = {
            "images_per_s": ips, "seconds_median": med, "seconds_all": times, "gflop_per_s": gflops,
            "matmul_peak_gflop_per_s": peak, "dgbench_over_baseline": ips["dgbench"] / ips["baseline"],
            "floor_over_dgbench": ips["floor"] / ips["dgbench"], "top1_err_equal_to_baseline": same,
        }
        print(f"\n[{precision}] matmul peak {peak:,.0f} GFLOP/s")
        print(f"  {'method':<9} {'images/s':>9} {'s (median)':>11} {'GFLOP/s':>9} {'% of peak':>9}")
        for m in ("dgbench", "baseline", "floor"):
            print(f"  {m:<9} {ips[m]:>9.2f} {med[m]:>11.2f} {gflops[m]:>9.1f} {100 * gflops[m] / peak:>8.1f}%")
        print(f"  dgbench/baseline = {results[precision]['dgbench_over_baseline']:.2f}x   "
              f"floor/dgbench = {results[precision]['floor_over_dgbench']:.3f}   "
              f"top-1 errors equal to the baseline's: {same}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

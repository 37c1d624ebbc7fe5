"""Benchmark: the mIoU bootstrap and the per-image counts' storage at Cityscapes-val scale.

Synthetic per-image counts shaped like Cityscapes val (500 images of 2048x1024, 19 classes; each
image holds a random subset of the classes, about 90 % of its pixels valid, about 75 % of them
right), then:

- the median wall time of :func:`dgbench.metrics.stats.seg_bootstrap` (2,000 resamples) over
  ``--repeats`` runs;
- the bytes of one record's counts file (``dgbench.results.outcomes.encode``, compressed npz).

    python benchmarks/seg_bootstrap_bench.py                 # 500 images x 19 classes x 2000 draws
    python benchmarks/seg_bootstrap_bench.py --images 200 --classes 11 --pixels 4096
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dgbench.metrics import stats
from dgbench.metrics.outcomes import SegImageCounts
from dgbench.results import outcomes


def synthetic_counts(images: int, classes: int, pixels: int, seed: int = 0) -> SegImageCounts:
    """Per-image (tp, gt, pred) counts: a Dirichlet split of ~90 % valid pixels over a random
    subset of the classes, ~75 % of each class right, the misses predicted as other present classes."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((images, classes), dtype=np.int64)
    pred = np.zeros_like(gt)
    tp = np.zeros_like(gt)
    for i in range(images):
        present = rng.random(classes) < 0.6
        present[rng.integers(classes)] = True
        share = np.zeros(classes)
        share[present] = rng.dirichlet(np.ones(present.sum()))
        gt[i] = rng.multinomial(int(pixels * 0.9), share)
        tp[i] = rng.binomial(gt[i], 0.75)
        missed = int((gt[i] - tp[i]).sum())
        pred[i] = tp[i] + rng.multinomial(missed, share)
    return SegImageCounts(np.ones(images, bool), tp, gt, pred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--pixels", type=int, default=2048 * 1024)
    ap.add_argument("--draws", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    counts = synthetic_counts(args.images, args.classes, args.pixels)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        got = stats.seg_bootstrap(counts.tp, counts.gt, counts.pred, n_boot=args.draws)
        times.append(time.perf_counter() - t0)
    size = len(outcomes.encode(counts, "0" * 64))
    miou, lo, hi = (100 * v for v in got["miou"])
    print(f"{args.images} images x {args.classes} classes x {args.draws} draws: bootstrap median "
          f"{statistics.median(times) * 1000:.1f} ms over {args.repeats} runs (min {min(times) * 1000:.1f} ms); "
          f"mIoU {miou:.2f} [{lo:.2f}, {hi:.2f}]")
    print(f"counts file per record: {size:,} bytes ({size / args.images:.0f} bytes per image; raw int64 "
          f"{3 * 8 * args.images * args.classes:,} bytes)")


if __name__ == "__main__":
    main()

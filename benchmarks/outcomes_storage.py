"""Benchmark: the bytes one record's per-image outcomes take in the store (issue 21).

Encodes, with the store's own writer (``dgbench.results.outcomes.encode``), the outcomes of
``--images`` images over ``--classes`` classes at several top-1 accuracies. Errors fall at random
and the predictions are uniform over the wrong classes, so nothing compresses better than
chance: a ceiling for real runs, whose errors cluster. Prints bytes per record, per appearance
run (5 conditions), and the share of the predicted class. Sizes, not times: no repeats needed.

    python benchmarks/outcomes_storage.py                       # ImageNet val: 50,000 images, 1,000 classes
    python benchmarks/outcomes_storage.py --images 599 --classes 10
"""
from __future__ import annotations

import argparse

import numpy as np

from dgbench.metrics.outcomes import SampleOutcomes
from dgbench.results.outcomes import encode


def outcomes(n: int, classes: int, top1: float, top5: float, rng: np.random.Generator) -> SampleOutcomes:
    labels = rng.integers(0, classes, n)
    right1 = rng.random(n) < top1
    right5 = right1 | (rng.random(n) < (top5 - top1) / max(1e-9, 1 - top1))
    wrong = (labels + rng.integers(1, classes, n)) % classes  # any class but the label
    pred = np.where(right1, labels, wrong)
    return SampleOutcomes(np.ones(n, bool), pred.astype(np.int64), {1: right1, 5: right5})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--classes", type=int, default=1_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.images:,} images, {args.classes:,} classes; bytes per record (npz, compressed)")
    print(f"{'top-1 acc':>9} {'top-5 acc':>9} {'record':>10} {'x5 conditions':>14} {'without pred':>13}")
    for top1, top5 in ((0.35, 0.60), (0.50, 0.75), (0.77, 0.93)):
        out = outcomes(args.images, args.classes, top1, top5, rng)
        size = len(encode(out, "bench"))
        bare = len(encode(SampleOutcomes(out.evaluated, np.zeros_like(out.pred), out.correct), "bench"))  # pred's share
        print(f"{top1:>9.0%} {top5:>9.0%} {size / 1000:>8.1f} KB {5 * size / 1000:>11.1f} KB {bare / 1000:>10.1f} KB")
    print(f"one packed bitset, before compression: {(args.images + 7) // 8 / 1000:.2f} KB")


if __name__ == "__main__":
    main()

"""Benchmark: rendering speed of the 19 common corruptions (images/s), and the slowest named.

Per corruption, at ``--severity`` (default 3), on ``--images`` 224x224 crops of scikit-image's
bundled photos, timed in one process:

1. **dgbench**: :func:`dgbench.corruptions.corrupt`, the seeded call the cache renders with (RNG
   state saved, seeded from the sample id, restored);
2. **peer**: the library's own ``imagecorruptions.corrupt`` on the same crops, unseeded: the ratio
   dgbench/peer is the cost of seeding per image (should be ~1);
3. **floor**: the cache's own work per image, PNG encode + decode of the crop (what a cached read
   and write cost; rendering can never be cheaper than writing the result).

Then the whole cache path on 2 cores (``style_cache.prepare`` with 2 loader workers, rendering in
the workers and writing lossless PNGs) for the slowest and the fastest corruption, against the
same with 1 worker. Every figure is the median of ``--repeats`` interleaved runs; images/s.

    python benchmarks/corruption_bench.py --images 32 --repeats 3
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")


def crops(n: int) -> list[np.ndarray]:
    """``n`` different 224 crops: each photo at a few offsets."""
    import cv2
    import skimage.data

    out = []
    for i in range(n):
        img = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()[..., :3]
        h, w = img.shape[:2]
        f = 256 / min(h, w)
        img = cv2.resize(img, (max(256, round(w * f)), max(256, round(h * f))), interpolation=cv2.INTER_AREA)
        dy, dx = (i // len(PHOTOS)) % 4 * 8, (i // len(PHOTOS)) % 3 * 8
        out.append(np.ascontiguousarray(img[dy:dy + 224, dx:dx + 224]))
    return out


def rate(fn, items: list) -> float:
    t0 = time.perf_counter()
    for i, x in enumerate(items):
        fn(i, x)
    return len(items) / (time.perf_counter() - t0)


def png_roundtrip(_: int, x: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG", compress_level=1)
    buf.seek(0)
    np.asarray(Image.open(buf).convert("RGB"))


class _Crops(torch.utils.data.Dataset):
    name = "bench-crops"
    num_classes = 1

    def __init__(self, arrays: list[np.ndarray]):
        self.t = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays]

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i: int):
        return self.t[i], 0

    def sample_id(self, i: int) -> str:
        return f"img{i:05d}"

    def fingerprint(self) -> str:
        return f"bench-{len(self.t)}"


def cache_rate(spec, ds, workers: int) -> float:
    from dgbench.data.base import Preprocess
    from dgbench.protocols import style_cache

    with tempfile.TemporaryDirectory() as tmp:
        rep = style_cache.prepare(spec, ds, Preprocess(256, 224, "bilinear"), workers=workers, batch_size=4,
                                  progress=False, root=Path(tmp))
        return rep.rendered / rep.duration_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--severity", type=int, default=3)
    args = ap.parse_args()
    import imagecorruptions

    from dgbench import corruptions
    from dgbench.shifts import ShiftSpec

    items = crops(args.images)
    names = corruptions.IMAGENET_C + corruptions.EXTRA
    for n in names:  # warm-up: numba compiles glass_blur once per process, imports load
        corruptions.corrupt(items[0], n, args.severity, 0)
    runs: dict[str, dict[str, list[float]]] = {n: {"dgbench": [], "peer": []} for n in names}
    floor: list[float] = []
    for _ in range(args.repeats):
        floor.append(rate(png_roundtrip, items))
        for n in names:
            runs[n]["dgbench"].append(rate(lambda i, x: corruptions.corrupt(x, n, args.severity, corruptions.corruption_seed(str(i), n)), items))
            runs[n]["peer"].append(rate(lambda i, x: imagecorruptions.corrupt(x, severity=args.severity, corruption_name=n), items))
    fl = statistics.median(floor)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in runs.items()}
    print(f"corruption rendering, severity {args.severity}, {args.images} crops of 224x224, median of {args.repeats}; "
          f"{corruptions.LIBRARY} {corruptions.library_version()}, torch threads {torch.get_num_threads()}")
    print(f"floor (PNG encode+decode of a crop): {fl:,.0f} img/s")
    print(f"{'corruption':18s} {'dgbench img/s':>14s} {'peer img/s':>11s} {'dgbench/peer':>13s} {'floor/dgbench':>14s}")
    order = sorted(names, key=lambda n: med[n]["dgbench"])
    for n in order:
        d, p = med[n]["dgbench"], med[n]["peer"]
        print(f"{n:18s} {d:14,.1f} {p:11,.1f} {d / p:13.2f} {fl / d:14.1f}")
    slow = ", ".join(f"{n} ({med[n]['dgbench']:.1f} img/s)" for n in order[:3])
    print(f"slowest: {slow}")
    print(f"fastest: {order[-1]} ({med[order[-1]]['dgbench']:,.0f} img/s)")
    ds = _Crops(items)
    print("cache path (style_cache.prepare: render in loader workers + lossless PNG), img/s:")
    for n in (order[0], order[1], order[-1]):
        spec = ShiftSpec(f"{n}-{args.severity}", "corruption", {"corruption": n, "severity": args.severity,
                         "group": "noise", "seed": 0, "work_size": 224})
        one, two = [], []
        for _ in range(args.repeats):
            one.append(cache_rate(spec, ds, 1))
            two.append(cache_rate(spec, ds, 2))
        a, b = statistics.median(one), statistics.median(two)
        print(f"  {n:18s} 1 worker {a:8.1f}   2 workers {b:8.1f}   2/1 {b / a:4.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

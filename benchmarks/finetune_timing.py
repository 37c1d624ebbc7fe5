"""Benchmark: seconds per fine-tuning iteration (Table 8's recipe) vs the bare training step.

Writes a synthetic Cityscapes tree (``--images`` train pairs at ``--size``, 2048x1024 by default
as the real data), saves a randomly initialised ``deeplab_resnet50_ibn_a`` as the "GTA5" source
checkpoint, and times, in one process, on one device:

1. **dgbench**: :func:`dgbench.train.segmentation.train_segmentation` fine-tuning from that
   checkpoint on the tree's train images with the paper's recipe (SGD, poly lr, batch
   ``--batch-size`` of ``--crop`` random crops after random scale/aspect/mirror), AMP on CUDA:
   the real loop, data loading and augmentation included. After ``--warmup`` iterations it is
   stopped; each repeat resumes from that checkpoint for N = ``--iterations`` and for 2N
   iterations, and (t(2N) - t(N)) / N is the time per iteration, start-up cancelled out.
2. **floor**: the same model's forward + loss + backward + SGD step under the same AMP, on one
   fixed batch already on the device (no data, no checkpoint): what the GPU alone needs.

Printed: the median seconds per iteration of each over ``--repeats``, images/s, and the ratio
dgbench / floor (the cost of loading and augmenting full-resolution images). Speed does not
depend on the weights, so nothing is downloaded.

    python benchmarks/finetune_timing.py                      # GPU: paper crop 713, batch 16, AMP
    python benchmarks/finetune_timing.py --device cpu --size 128x64 --crop 64 --batch-size 2 \\
        --images 4 --iterations 2 --warmup 1 --repeats 1     # a smoke test on the CPU
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from _bench import sync

MODEL = "deeplab_resnet50_ibn_a"


def write_cityscapes(root: Path, n: int, size: tuple[int, int]) -> Path:
    """``n`` train and 1 val pairs in the official layout; labels of blocks of valid labelIds."""
    from dgbench.data.seg_base import TRAIN_TO_LABEL

    rng = np.random.default_rng(0)
    w, h = size
    for split, count in (("train", n), ("val", 1)):
        img_dir, lbl_dir = root / "leftImg8bit" / split / "bench", root / "gtFine" / split / "bench"
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            small = rng.choice(TRAIN_TO_LABEL[:19], size=(-(-h // 32), -(-w // 32)))
            lab = np.kron(small, np.ones((32, 32), dtype=np.uint8))[:h, :w].astype(np.uint8)
            img = ((lab.astype(np.int32)[..., None] * np.array([7, 13, 29])) % 256
                   + rng.integers(-20, 21, size=(h, w, 3))).clip(0, 255).astype(np.uint8)
            stem = f"bench_{i:06d}_000019"
            Image.fromarray(img).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(lab).save(lbl_dir / f"{stem}_gtFine_labelIds.png")
    return root


def time_dgbench(args: argparse.Namespace, root: Path, source: Path, work: Path) -> tuple[list[float], list[float]]:
    """Per-iteration seconds and fixed start-up seconds (model build, checkpoint load, loader start).

    Each repeat resumes the warmed-up run twice, for N and for 2N iterations; the difference over
    N is the time per iteration with the start-up cancelled out.
    """
    from dgbench.train.segmentation import CHECKPOINT, train_segmentation

    n = args.iterations
    common = dict(root=root, out_dir=work, init_weights=source, indices=list(range(args.images)),
                  iterations=args.warmup + 2 * n, batch_size=args.batch_size,
                  crop_size=(args.crop, args.crop), device=args.device, amp=True, num_workers=args.workers,
                  progress=False, checkpoint_every=None)
    train_segmentation("cityscapes", MODEL, resume=False, stop_after=args.warmup, **common)
    saved = work / "warm.pth"
    shutil.copyfile(work / CHECKPOINT, saved)
    per_it, startup = [], []
    for _ in range(args.repeats):
        times = []
        for stop in (args.warmup + n, args.warmup + 2 * n):
            shutil.copyfile(saved, work / CHECKPOINT)
            sync(args.device)
            t0 = time.perf_counter()
            r = train_segmentation("cityscapes", MODEL, resume=True, stop_after=stop, **common)
            sync(args.device)
            assert r.iteration == stop and r.resumed_from == args.warmup
            times.append(time.perf_counter() - t0)
        per_it.append((times[1] - times[0]) / n)
        startup.append(times[0] - n * per_it[-1])
    return per_it, startup


def time_floor(args: argparse.Namespace, source: Path) -> list[float]:
    from dgbench.models.registry import create_model

    dev = torch.device(args.device)
    net = create_model(MODEL, pretrained=str(source), num_classes=19).to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    x = torch.randn(args.batch_size, 3, args.crop, args.crop, device=dev)
    y = torch.randint(0, 19, (args.batch_size, args.crop, args.crop), device=dev)

    def step() -> None:
        with torch.autocast(device_type=dev.type, enabled=use_amp):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(args.warmup):
        step()
    per_it = []
    for _ in range(args.repeats):
        sync(args.device)
        t0 = time.perf_counter()
        for _ in range(args.iterations):
            step()
        sync(args.device)
        per_it.append((time.perf_counter() - t0) / args.iterations)
    return per_it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", default="2048x1024", help="generated image size WxH (Cityscapes: 2048x1024)")
    ap.add_argument("--crop", type=int, default=713, help="training crop (dgbench's default for the paper's recipe)")
    ap.add_argument("--batch-size", type=int, default=16, help="the paper's batch")
    ap.add_argument("--images", type=int, default=32, help="generated train images (at least one batch)")
    ap.add_argument("--iterations", type=int, default=5, help="timed iterations per repeat")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=8, help="data-loading processes of the dgbench loop")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.images < args.batch_size:
        ap.error(f"--images {args.images} is less than one batch of {args.batch_size}")
    from dgbench.models.registry import create_model

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        root = write_cityscapes(tmpd / "cityscapes", args.images, (w, h))
        source = tmpd / "gta5-source.pth"
        torch.manual_seed(0)
        torch.save(create_model(MODEL, num_classes=19).state_dict(), source)
        dg, startup = time_dgbench(args, root, source, tmpd / "run")
        fl = time_floor(args, source)
    name = torch.cuda.get_device_name(torch.device(args.device)) if torch.device(args.device).type == "cuda" else "cpu"
    d, f = statistics.median(dg), statistics.median(fl)
    print(f"{MODEL} fine-tuning on {name}: batch {args.batch_size} x {args.crop}x{args.crop} crops of {w}x{h} images, "
          f"AMP {'on' if torch.device(args.device).type == 'cuda' else 'off (CPU)'}, median of {args.repeats} x {args.iterations} iterations")
    print(f"  dgbench train_segmentation: {d:.4f} s/iteration ({args.batch_size / d:.1f} images/s), "
          f"plus {statistics.median(startup):.1f} s start-up per call (model, checkpoint, loader workers)")
    print(f"  floor (fwd+bwd+step, batch on device): {f:.4f} s/iteration ({args.batch_size / f:.1f} images/s)")
    print(f"  ratio dgbench / floor: {d / f:.2f}")


if __name__ == "__main__":
    main()

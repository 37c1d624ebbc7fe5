"""Hand-made result records for the results tests (no models, no engine), and a store writer
that runs in a child process for the concurrency tests."""
from __future__ import annotations

from typing import Any

from dgbench.results.record import new_record
from dgbench.results.store import ResultStore

# Stamped explicitly so tests neither import torch nor call git for every record.
STAMP = {"versions": {"dgbench": "test"}, "git_commit": None, "started_at": "2026-01-01T00:00:00+00:00"}


def appearance(model: str, shift: str, top1: float, top5: float, origin: tuple[float, float] | None = None,
               *, seed: int = 0, dataset: str = "imagenet", protocol: str = "appearance",
               drop: bool = True, spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A classification appearance record; ``origin`` = (top1, top5) of its reference."""
    ref = None if shift == "origin" else "origin"
    d = {}
    if ref and drop:
        assert origin is not None
        d = {"top1_err": top1 - origin[0], "top5_err": top5 - origin[1]}
    return new_record(task="classification", protocol=protocol, dataset=dataset, model=model,
                      shift=shift, shift_spec=spec or {"kind": shift}, reference=ref,
                      metrics={"top1_err": top1, "top5_err": top5}, drop=d, seed=seed,
                      **STAMP, **extra)


def cross(model: str, train: str, test: str, metrics: dict[str, float],
          ref: dict[str, float] | None = None, *, task: str = "segmentation",
          dataset: str = "cityscapes-gta5", seed: int = 0) -> dict[str, Any]:
    """A cross-domain record; ``ref`` = the in-domain metrics its drop is measured from."""
    drop = {k: v - ref[k] for k, v in metrics.items() if isinstance(v, float)} if ref else {}
    return new_record(task=task, protocol="cross-domain", dataset=dataset, model=model,
                      train_domain=train, test_domain=test, reference=train if ref else None,
                      metrics=metrics, drop=drop, seed=seed, **STAMP)


def table1_records(dataset: str = "imagenet") -> list[dict[str, Any]]:
    """Two models x (origin, rgb+50, std-x1.5), one seed."""
    recs = []
    for model, o, r, s in (("resnet50", (24.3, 7.1), (28.2, 9.6), (40.0, 19.0)),
                           ("resnet50_ibn_b", (23.6, 6.9), (23.8, 7.0), (23.6, 6.9))):
        recs.append(appearance(model, "origin", *o, dataset=dataset))
        recs.append(appearance(model, "rgb+50", *r, o, dataset=dataset))
        recs.append(appearance(model, "std-x1.5", *s, o, dataset=dataset))
    return recs


def write_many(root: str, worker: int, n: int, payload_bytes: int) -> int:
    """Child process: append ``n`` records (each padded to about ``payload_bytes``) one by one."""
    store = ResultStore(root)
    pad = "x" * payload_bytes  # larger than a pipe buffer: an unlocked append could tear
    for i in range(n):
        store.append([new_record(task="classification", protocol="appearance", dataset="d",
                                 model=f"w{worker}", shift=f"s{i}", metrics={"top1_err": float(i)},
                                 seed=worker, pad=pad, **STAMP)])
    return n


def write_forever(root: str) -> None:
    """Child process: append records until killed (the killed-writer test)."""
    store = ResultStore(root)
    pad = "y" * 200_000  # big writes, so a kill may land mid-write
    i = 0
    while True:
        store.append([new_record(task="classification", protocol="appearance", dataset="d",
                                 model="killed", shift=f"s{i}", metrics={"top1_err": 1.0},
                                 pad=pad, **STAMP)])
        i += 1

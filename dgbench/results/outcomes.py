"""Per-image outcomes of records, in a sidecar beside the results store.

Each record that has them owns one file, ``<results dir>/outcomes/<protocol>/<record key>.npz``,
in dataset order (the dataset's fingerprint is in the record, the order of its sample ids is
hashed into the file), with one of two payloads:

* classification (:class:`SampleOutcomes`): the images evaluated, top-1 and top-k correctness as
  packed bitsets (one bit per image) and the top-1 predicted class in the smallest integer type
  that holds it;
* segmentation (:class:`SegImageCounts`, ``payload = "segmentation"``): the images evaluated and
  each image's per-class pixel counts, int64 ``[images, classes]`` arrays ``tp``, ``gt``,
  ``pred`` (intersection, ground truth, prediction; the union is gt + pred - tp). Summed over
  the images they are the record's confusion totals exactly, so its mIoU can be bootstrapped.

Atomicity: :func:`write` writes a temporary file, fsyncs it and ``os.replace``s it into place,
and the protocol calls it *before* appending the record. So a record never exists without its
outcomes; a run killed between the two leaves a file whose key has no record, which readers
never open (they start from records) and the resumed run overwrites when it computes that key
(tests/test_kill9.py kills real runs with SIGKILL to check both). A record made with
``--no-outcomes`` (or before outcomes existed) simply has none.

:func:`load` reads them as a pandas frame, one row per image per condition (segmentation: per
image per class).
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DgbenchError
from ..metrics.outcomes import SampleOutcomes, SegImageCounts

FORMAT_VERSION = 1
FOLDER = "outcomes"
SEG_PAYLOAD = "segmentation"  # files without a payload field are classification outcomes
Outcomes = SampleOutcomes | SegImageCounts


def path_for(root: str | os.PathLike, protocol: str, key: str) -> Path:
    return Path(root) / FOLDER / protocol / f"{key}.npz"


def order_hash(sample_ids: Iterable[str]) -> str:
    """sha256 of the sample ids in dataset order: two files pair image by image when theirs agree."""
    h = hashlib.sha256()
    for sid in sample_ids:
        h.update(sid.encode() + b"\n")
    return h.hexdigest()


def _pred_dtype(pred: np.ndarray) -> type:
    top = int(pred.max()) if pred.size else 0
    return np.int8 if top < 2 ** 7 else np.int16 if top < 2 ** 15 else np.int32


def encode(out: Outcomes, sample_order: str) -> bytes:
    """The file's bytes (a compressed npz)."""
    arrays: dict[str, Any] = {"format": np.array(FORMAT_VERSION), "n": np.array(len(out)),
                              "order": np.array(sample_order), "evaluated": np.packbits(out.evaluated)}
    if isinstance(out, SegImageCounts):
        arrays.update(payload=np.array(SEG_PAYLOAD), **{a: getattr(out, a).astype(np.int64) for a in ("tp", "gt", "pred")})
    else:
        arrays.update(ks=np.array(sorted(out.correct), dtype=np.int64), pred=out.pred.astype(_pred_dtype(out.pred)))
        for k, bits in out.correct.items():
            arrays[f"top{k}"] = np.packbits(bits)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def write(root: str | os.PathLike, protocol: str, key: str, out: Outcomes, sample_order: str) -> Path:
    """Write one record's outcomes atomically (temp file, fsync, rename); returns the path.

    A temp file of the same key left by a killed writer (SIGKILL skips ``finally``) is removed
    once ours is in place; readers never open temp files."""
    path = path_for(root, protocol, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(encode(out, sample_order))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except FileNotFoundError:
        if not path.exists():  # our temp file was removed by a writer of the same key that finished first
            raise
    finally:
        if tmp.exists():
            tmp.unlink()
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def write_all(root: str | os.PathLike, protocol: str, by_key: Mapping[str, Outcomes], sample_order: str) -> None:
    for key, out in by_key.items():
        write(root, protocol, key, out, sample_order)


def _decode(z: Any) -> Outcomes:
    n = int(z["n"])
    unpack = lambda a: np.unpackbits(a, count=n).astype(bool)  # noqa: E731
    if "payload" in z.files and str(z["payload"]) == SEG_PAYLOAD:
        return SegImageCounts(evaluated=unpack(z["evaluated"]), tp=z["tp"], gt=z["gt"], pred=z["pred"])
    return SampleOutcomes(evaluated=unpack(z["evaluated"]), pred=z["pred"].astype(np.int64),
                          correct={int(k): unpack(z[f"top{int(k)}"]) for k in z["ks"]})


def read(root: str | os.PathLike, protocol: str, key: str) -> tuple[Any, str] | None:
    """``(outcomes, sample order hash)`` of the record ``key``, or None when it has none: a
    :class:`SampleOutcomes` for a classification record, :class:`SegImageCounts` for segmentation.

    Decoded once per file version: a table reads a reference run's file for every shifted row
    and metric. The arrays returned are read-only (they are shared between callers)."""
    path = path_for(root, protocol, key)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _read_version(str(path), st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)  # a 50k-image classification file decodes to ~0.6 MB
def _read_version(path: str, inode: int, mtime_ns: int, size: int) -> tuple[Any, str]:
    """One version of an outcomes file (files are replaced whole, by rename: a new version is a
    new inode and time)."""
    try:
        with np.load(path) as z:
            out, order = _decode(z), str(z["order"])
    except (OSError, KeyError, ValueError) as exc:
        raise DgbenchError(f"{path}: unreadable per-image outcomes ({exc}); delete the file and rerun "
                           "that record with `dgbench run ... --force`") from None
    for value in vars(out).values():
        for array in value.values() if isinstance(value, dict) else [value]:
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
    return out, order


def _condition(rec: dict[str, Any]) -> Any:
    """A record's condition: its shift, or ``train->test`` for a cross-domain cell."""
    if rec.get("shift") is None and rec.get("train_domain"):
        return f"{rec['train_domain']}->{rec.get('test_domain')}"
    return rec.get("shift")


def frame_of(rec: dict[str, Any], out: Outcomes) -> Any:
    """The rows of one record: classification, one per evaluated image (sample index, pred,
    correct@k); segmentation, one per evaluated image and class (class, tp, gt, pred counts)."""
    import pandas as pd

    idx = np.flatnonzero(out.evaluated)
    cols: dict[str, Any] = {"model": rec.get("model"), "protocol": rec.get("protocol"), "dataset": rec.get("dataset"),
                            "condition": _condition(rec), "key": rec.get("key")}
    if isinstance(out, SegImageCounts):
        c = out.num_classes
        names = list(rec.get("per_class_iou") or {}) or [str(i) for i in range(c)]
        cols.update(sample=np.repeat(idx, c), **{"class": np.tile(names[:c], idx.size)})
        cols.update({a: getattr(out, a)[idx].ravel() for a in ("tp", "gt", "pred")})
        return pd.DataFrame(cols)
    cols.update(sample=idx, pred=out.pred[idx])
    for k, bits in sorted(out.correct.items()):
        cols[f"top{k}_correct"] = bits[idx]
    return pd.DataFrame(cols)


def latest_by_key(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per key, the last one stored (a forced rerun appends the same key again)."""
    return list({r["key"]: r for r in records}.values())


def load(results: str | os.PathLike | None = None, protocol: str = "appearance", model: str | Iterable[str] | None = None) -> Any:
    """Every stored per-image outcome of ``protocol`` (optionally of some models) as a pandas frame.

    One row per image per condition; records without outcomes are left out (orphan files, whose
    record was never appended, are never read).
    """
    import pandas as pd

    from ..config import results_dir
    from .store import ResultStore

    store = ResultStore(results_dir(results))
    models = {model} if isinstance(model, str) else set(model) if model is not None else None
    frames = []
    for rec in latest_by_key(store.iter_records(protocol)):
        if models is not None and rec.get("model") not in models:
            continue
        got = read(store.root, protocol, rec["key"])
        if got is not None:
            frames.append(frame_of(rec, got[0]))
    if not frames:
        return pd.DataFrame(columns=["model", "protocol", "dataset", "condition", "key", "sample", "pred"])
    return pd.concat(frames, ignore_index=True)

"""Per-image outcomes of classification records, in a sidecar beside the results store.

Each record that has them owns one file, ``<results dir>/outcomes/<protocol>/<record key>.npz``:
the images evaluated, top-1 and top-k correctness as packed bitsets (one bit per image, in dataset
order: the dataset's fingerprint is in the record, the order of its sample ids is hashed into the
file) and the top-1 predicted class in the smallest integer type that holds it.

Atomicity: :func:`write` writes a temporary file, fsyncs it and ``os.replace``s it into place,
and the protocol calls it *before* appending the record. So a record never exists without its
outcomes; a run killed between the two leaves a file whose key has no record, which readers
never open (they start from records) and the resumed run overwrites when it computes that key
(tests/test_kill9.py kills real runs with SIGKILL to check both). A record made with
``--no-outcomes`` (or before outcomes existed) simply has none.

:func:`load` reads them as a pandas frame, one row per image per condition.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DgbenchError
from ..metrics.outcomes import SampleOutcomes

FORMAT_VERSION = 1
FOLDER = "outcomes"


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


def encode(out: SampleOutcomes, sample_order: str) -> bytes:
    """The file's bytes (a compressed npz)."""
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT_VERSION), "n": np.array(len(out)), "order": np.array(sample_order),
        "ks": np.array(sorted(out.correct), dtype=np.int64), "evaluated": np.packbits(out.evaluated),
        "pred": out.pred.astype(_pred_dtype(out.pred)),
    }
    for k, bits in out.correct.items():
        arrays[f"top{k}"] = np.packbits(bits)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def write(root: str | os.PathLike, protocol: str, key: str, out: SampleOutcomes, sample_order: str) -> Path:
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


def write_all(root: str | os.PathLike, protocol: str, by_key: Mapping[str, SampleOutcomes], sample_order: str) -> None:
    for key, out in by_key.items():
        write(root, protocol, key, out, sample_order)


def read(root: str | os.PathLike, protocol: str, key: str) -> tuple[SampleOutcomes, str] | None:
    """``(outcomes, sample order hash)`` of the record ``key``, or None when it has none."""
    path = path_for(root, protocol, key)
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            n = int(z["n"])
            ks = [int(k) for k in z["ks"]]
            unpack = lambda a: np.unpackbits(a, count=n).astype(bool)  # noqa: E731
            out = SampleOutcomes(evaluated=unpack(z["evaluated"]), pred=z["pred"].astype(np.int64),
                                 correct={k: unpack(z[f"top{k}"]) for k in ks})
            return out, str(z["order"])
    except (OSError, KeyError, ValueError) as exc:
        raise DgbenchError(f"{path}: unreadable per-image outcomes ({exc}); delete the file and rerun "
                           "that record with `dgbench run ... --force`") from None


def frame_of(rec: dict[str, Any], out: SampleOutcomes) -> Any:
    """One row per evaluated image of one record: model, condition, sample index, pred, correct@k."""
    import pandas as pd

    idx = np.flatnonzero(out.evaluated)
    cols: dict[str, Any] = {"model": rec.get("model"), "protocol": rec.get("protocol"), "dataset": rec.get("dataset"),
                            "condition": rec.get("shift"), "key": rec.get("key"), "sample": idx, "pred": out.pred[idx]}
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

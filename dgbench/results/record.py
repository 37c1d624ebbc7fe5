"""One result record: what was measured, and the fingerprint of everything that produced it.

A record is a JSON-serialisable dict (one line of the store). Its ``key`` hashes the fields that
identify the *work* (model, weights, variant kwargs, protocol, dataset content, shift spec,
preprocessing, precision, subset, seed): two runs with the same key measure the same thing, which
is how ``dgbench run`` skips stored work and resumes an interrupted run. Fields that describe the
*execution* (device, batch size, timings, versions) are recorded but not hashed, so a result is
identical whatever the batch size or world size.

What invalidates a stored result: any identity field changing, and ``code`` among them: the
package version and :data:`NUMERICS_VERSION`, bumped whenever a change to a model, shift,
preprocessing, loop or metric can move a number. After an upgrade, ``dgbench run`` recomputes
instead of reusing records made by older code (the old records stay in the store; tables show the
newest configuration of each condition and say when older ones were left out).

Schema versions: 2 (this one) keeps ``metrics`` scalar (per-class IoU is its own field,
``per_class_iou``) and adds ``code`` to the identity. :func:`upgrade` reads version 1 records.

Fields (units in names where they matter; metrics are percentages):
    schema_version, key, code, kind (the result kind: results.kinds; not hashed),
    task ("classification" | "segmentation"), protocol,
    model, model_kwargs, weights_sha256, weights_source,
    weights_tag,                        # which released weights ran (models.pretrained; not hashed:
                                        #   weights_sha256 is, and a non-default tag is in model)
    dataset, dataset_fingerprint, dataset_info,
    train_domain, test_domain,          # cross-domain protocols (None otherwise)
    shift, shift_spec,                  # appearance protocols ("origin" for the clean reference)
    pair, pair_spec, layer,             # divergence protocols: the domain pair and the probed layer
    layer_index, has_in, domain_sizes,  #   (hashed only when set; see OPTIONAL_IDENTITY_FIELDS)
    reference,                          # name of the condition the drop is measured from (None for itself)
    metrics,                            # scalars, e.g. {"top1_err": 22.54, "top5_err": 6.32} or {"miou": .., "pixel_acc": ..}
    drop,                               # metric minus the reference's metric, same keys ({} for the reference)
    per_class_iou,                      # segmentation: {class name: IoU %} (None where undefined)
    num_samples, skipped_corrupt, seed, limit, subset,
    preprocessing, precision, device, batch_size, world_size,
    versions, git_commit, started_at, duration_s, images_per_s
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
# Bump when a change can move a measured number (a model's layers, a shift's formula, the
# preprocessing, an evaluation loop, a metric): stored results of older code are then recomputed.
NUMERICS_VERSION = 5  # 3: the one-pass IBN inference path (fp32 within 1e-5 of the generic one);
#                        4: half precision on the CPU back on the generic IBN layers (faster there);
#                        5: segmentation and fine-tuning run the precision they record (fp16 was bf16,
#                           CPU bf16/fp16 were fp32, CUDA fp32 allowed TF32 convolutions)

# The fields whose values identify the measured work (hashed into ``key``).
IDENTITY_FIELDS = (
    "code", "task", "protocol", "model", "model_kwargs", "weights_sha256", "dataset", "dataset_fingerprint",
    "train_domain", "test_domain", "shift", "shift_spec", "preprocessing", "precision", "limit",
    "subset", "seed",
)


def code_identity() -> dict[str, Any]:
    """What identifies the computation's code in a result's key (see the module docstring)."""
    from .. import __version__

    return {"dgbench": __version__, "numerics": NUMERICS_VERSION}


def upgrade(rec: dict[str, Any]) -> dict[str, Any]:
    """A record of any schema version in the current shape (its key is left as stored)."""
    if rec.get("schema_version", 1) < 2:
        rec = dict(rec)
        metrics = dict(rec.get("metrics") or {})
        if isinstance(metrics.get("per_class_iou"), dict):  # v1 segmentation kept it inside metrics
            rec["per_class_iou"] = metrics.pop("per_class_iou")
        rec["metrics"] = metrics
        rec.setdefault("code", None)  # made before code identity was recorded
        rec["schema_version"] = 2
    return rec


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): the byte form that fingerprints hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(obj: Any) -> str:
    """sha256 hex digest of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


# Identity fields of some kinds only (divergence: the domain pair and the probed layer); hashed
# only when set, so the keys of records without them stay what they were.
OPTIONAL_IDENTITY_FIELDS = ("pair", "pair_spec", "layer")


def record_key(record: dict[str, Any]) -> str:
    """The key of a record's identity; ``code`` is that of this dgbench unless the record has one."""
    ident = {f: record.get(f) for f in IDENTITY_FIELDS}
    if "code" not in record:
        ident["code"] = code_identity()
    ident.update({f: record[f] for f in OPTIONAL_IDENTITY_FIELDS if record.get(f) is not None})
    return fingerprint(ident)[:32]


def versions() -> dict[str, str | None]:
    import torch
    import torchvision

    from .. import __version__

    return {
        "dgbench": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def git_commit() -> str | None:
    """The commit of the dgbench checkout, when running from one (None for an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_record(**fields: Any) -> dict[str, Any]:
    """A complete record from the given fields: defaults filled, versions stamped, key computed."""
    rec: dict[str, Any] = {f: None for f in IDENTITY_FIELDS}
    rec.update(
        code=code_identity(),
        schema_version=SCHEMA_VERSION,
        model_kwargs={},
        metrics={},
        drop={},
        reference=None,
        skipped_corrupt=0,
        world_size=1,
    )
    rec.update(fields)
    # Stamp only what the caller did not give: ``setdefault(k, f())`` would call ``f`` anyway,
    # importing torch and spawning git once per record.
    for name, stamp in (("versions", versions), ("git_commit", git_commit), ("started_at", now_iso)):
        if name not in rec:
            rec[name] = stamp()
    if not rec.get("kind"):  # every record names its result kind (a plugin's protocol may not say)
        from .kinds import infer_kind

        rec["kind"] = infer_kind(rec)
    rec["key"] = record_key(rec)
    return rec

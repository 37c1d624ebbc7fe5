"""What a model's record says about the model, its weights and its inputs: one function for every
protocol that scores a built model on a dataset (appearance, natural shifts, shape bias, divergence).

The fields hashed into a record's key (results.record.IDENTITY_FIELDS) and which weights ran
(``weights_source``, ``weights_tag``: recorded, not hashed) are written here once, so a protocol
cannot leave one out.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..data.base import Preprocess
from .base import RunRequest
from .model_select import model_seed, weights_source


def preprocessing_info(prep: Preprocess, model: nn.Module, ds: Any) -> dict[str, Any]:
    """The preprocessing a record's inputs went through: resize/crop, the model's normalisation, the decode."""
    cfg = model.pretrained_cfg  # type: ignore[attr-defined]
    info = {**prep.to_dict(), "mean": list(cfg.mean), "std": list(cfg.std)}
    on_pil = "PIL decode + antialiased resize (torchvision Resize/CenterCrop on PIL)"
    info["decode"] = getattr(ds, "decode_info", on_pil if ds.name == "imagenet" else ds.name)
    return info


def model_identity(m: nn.Module, name: Any, req: RunRequest, precision: str, prep: Preprocess, ds: Any, *,
                   protocol: str, dataset: str, subset: int | None) -> dict[str, Any]:
    """Model ``m`` (asked for as ``name``) scored on ``ds``: its identity fields and its weights' provenance.

    ``dataset`` is the dataset the record is filed under (a natural shift's is the clean set, not
    ``ds``); ``subset`` is the request's, or None where the protocol does not subsample."""
    return dict(
        task="classification", protocol=protocol, model=getattr(m, "dgbench_name", type(m).__name__),
        model_kwargs=getattr(m, "variant_kwargs", {}), weights_sha256=getattr(m, "weights_sha256", None),
        weights_source=weights_source(name, req.checkpoint, req.pretrained),
        weights_tag=getattr(m, "weights_tag", None),
        dataset=dataset, dataset_fingerprint=ds.fingerprint(), preprocessing=preprocessing_info(prep, m, ds),
        precision=precision, limit=req.limit, subset=subset, seed=model_seed(m, req.seed),
    )

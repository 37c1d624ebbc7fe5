"""The cross-domain protocol's segmentation task: how segmentation pairs run.

:data:`SEGMENTATION` tells the cross-domain kind (:mod:`.cross_domain`) which models a request
means (small scene DeepLabs with shipped checkpoints, or a zoo DeepLab from two checkpoints), how
to load them, their test sets, and how to evaluate them
(:func:`dgbench.engine.segmentation.evaluate_segmentation`, whole image or sliding window:
:class:`Inference`). :func:`run_cross_domain_segmentation` is the same 2x2 from Python with your
own checkpoints and test sets.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DgbenchError
from ..runtime import Runtime, check_precision
from .base import RunRequest
from .cross_domain_cells import Domain, Evaluation, Task, cross_domain

SEG_OPTIONS = ("eval_mode", "crop", "stride", "flip", "eval_scale", "save_predictions", "gta5_mismatch",
               "gta5_split_file", "no_outcomes")
DEFAULT_WINDOW = (769, 769), (513, 513)  # the sliding window's crop and stride (pixels, h x w)


def _size(value: Any, flag: str, default: tuple[int, int]) -> tuple[int, int]:
    """``769`` / ``"769x769"`` / ``(769, 769)`` -> ``(h, w)``; a clear error for anything else."""
    if value is None:
        return default
    if isinstance(value, (tuple, list)):
        parts = [int(v) for v in value]
    else:
        try:
            parts = [int(v) for v in str(value).lower().replace(",", "x").split("x")]
        except ValueError:
            parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise DgbenchError(f"{flag} {value!r}: expected H or HxW in pixels, e.g. 769 or 769x769")
    return (parts[0], parts[-1])


@dataclass(frozen=True)
class Inference:
    """How a segmentation model is run on a test image (recorded as the record's preprocessing)."""

    mode: str = "whole"
    scale: float = 1.0
    flip: bool = False
    crop_size: tuple[int, int] = DEFAULT_WINDOW[0]
    stride: tuple[int, int] = DEFAULT_WINDOW[1]

    @classmethod
    def from_options(cls, opts: dict[str, Any]) -> "Inference":
        mode = opts.get("eval_mode") or "whole"
        if mode not in ("whole", "slide"):
            raise DgbenchError(f"--eval-mode {mode!r}: expected whole or slide")
        return cls(mode, float(opts.get("eval_scale") or 1.0), bool(opts.get("flip")),
                   _size(opts.get("crop"), "--crop", DEFAULT_WINDOW[0]), _size(opts.get("stride"), "--stride", DEFAULT_WINDOW[1]))

    def record(self) -> dict[str, Any]:
        info: dict[str, Any] = {"mode": self.mode, "scale": self.scale, "flip": self.flip}
        if self.mode == "slide":
            info.update(crop_size=list(self.crop_size), stride=list(self.stride))
        return info


def segmentation_evaluate(
    *,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = DEFAULT_WINDOW[0],
    stride: tuple[int, int] = DEFAULT_WINDOW[1],
    flip: bool = False,
    precision: str | None = None,
    save_predictions: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
    runtime: Runtime | None = None,
    per_image: bool = True,
) -> Any:
    """An evaluate function for :func:`dgbench.protocols.cross_domain.cross_domain` (task "segmentation").

    The forwards run in ``runtime``'s precision (or ``precision`` on ``device`` without one).
    Returns ``Evaluation(metrics={"miou", "pixel_acc"} in percent, extra={"per_class_iou": ...})``; with
    ``save_predictions`` the PNGs go to ``<dir>/<train domain>-to-<test set>/``. ``per_image``: also
    each image's per-class counts (``Evaluation.outcomes``, stored beside the record by a run with
    a results store; they give ``dgbench table`` its mIoU intervals).
    """
    import time

    from ..engine.segmentation import evaluate_segmentation

    def evaluate(model: torch.nn.Module, ds: Any) -> Evaluation:
        save_dir = None
        if save_predictions:
            trained_on = getattr(model, "train_domain", None) or getattr(model, "dgbench_name", "model")
            save_dir = Path(save_predictions) / f"{trained_on}-to-{getattr(ds, 'name', 'data')}"
        t0 = time.perf_counter()
        m, cm = evaluate_segmentation(
            model, ds, device=device, mode=mode, scale=scale, crop_size=crop_size, stride=stride, flip=flip,
            precision=precision, save_dir=save_dir, limit=limit, progress=progress, runtime=runtime,
            per_image=per_image,
        )
        rec = m.as_record_metrics()
        per_class = rec.pop("per_class_iou")  # scalar metrics only: every one gets a drop
        n = len(ds) if limit is None else min(limit, len(ds))
        return Evaluation(metrics=rec, num_samples=n, duration_s=time.perf_counter() - t0, device=str(device),
                          extra={"batch_size": 1, "per_class_iou": per_class}, outcomes=cm.per_image(evaluated=n))

    return evaluate


def builtin_scene_models(spec: Any) -> list[str]:
    """The small scene DeepLabs meant by ``spec``: ``ibn_b`` / ``small_resnet_ibn_b`` /
    ``deeplab_small_resnet_ibn_b``, ``all`` or a glob (on either name); only models with shipped
    checkpoints qualify."""
    from ..builtin.checkpoints import scene_manifest
    from ..builtin.names import SMALL_MODELS, scene_name_for
    from .model_select import pick_small

    shipped = [f"deeplab_{s}" for s in SMALL_MODELS if f"deeplab_{s}-digit-scenes.pth" in scene_manifest()]
    out: list[str] = []
    for one in ([spec] if isinstance(spec, str) else list(spec)):
        if any(c in one for c in "*?[") and not one.startswith(("deeplab_", "*")):
            one = "deeplab_" + one  # a glob on the backbone's name matches its DeepLab
        out += [h for h in pick_small(one, shipped, scene_name_for, "shipped digit-scenes checkpoints") if h not in out]
    return out


def _seg_models(req: RunRequest, pair: Any) -> list[Any]:
    if pair.weights == "builtin":
        return builtin_scene_models(req.model)
    from ..models.external import is_external
    from ..models.registry import resolve_name
    from .model_select import split_names

    model = split_names(req.model)
    if not isinstance(model, str) or model == "all" or any(c in model for c in "*?["):
        raise DgbenchError(f"the {pair.name} pair evaluates one model (the one --checkpoint-a/-b hold); got --model {req.model!r}")
    if is_external(model):
        return [model]
    name = model if model.startswith("deeplab_") else f"deeplab_{resolve_name(model)}"
    return [resolve_name(name)]  # unknown names: suggestions


def _seg_builtin(name: Any, domain: str) -> Any:
    from ..builtin.checkpoints import builtin_scene_checkpoints
    from ..models.registry import create_model

    return lambda: create_model(name, pretrained=builtin_scene_checkpoints(name)[domain])


def _seg_load(name: Any, path: str, req: RunRequest) -> torch.nn.Module:
    from .model_select import build_model

    return build_model(name, checkpoint=path, kwargs=req.model_kwargs)


def _seg_test_set(domain: str, model: torch.nn.Module, pair: Any, req: RunRequest) -> Any:
    from ..data.base import build_dataset

    opts: dict[str, Any] = {}
    if domain == "gta5":
        opts = {"split_file": req.options.get("gta5_split_file"), "size_mismatch": req.options.get("gta5_mismatch") or "error"}
    root = (req.options.get("roots") or {}).get(domain)
    return build_dataset(domain, root, split=pair.split, **opts)


def _seg_evaluate(req: RunRequest, rt: Runtime) -> Any:
    inf = Inference.from_options(req.options)
    return segmentation_evaluate(device=rt.device, mode=inf.mode, scale=inf.scale, crop_size=inf.crop_size,
                                 stride=inf.stride, flip=inf.flip,
                                 save_predictions=req.options.get("save_predictions"), limit=req.limit,
                                 progress=req.progress, runtime=rt,
                                 per_image=bool(req.store) and not req.options.get("no_outcomes"))


def _seg_preprocessing(req: RunRequest) -> Any:
    info = Inference.from_options(req.options).record()
    return lambda model, ds: dict(info)


SEGMENTATION = Task(_seg_models, _seg_builtin, _seg_load, _seg_test_set, _seg_evaluate, _seg_preprocessing,
                    SEG_OPTIONS, test_set_needs_model=False)


def run_cross_domain_segmentation(
    model: str,
    checkpoints: dict[str, str | os.PathLike],
    test_sets: dict[str, Any],
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = DEFAULT_WINDOW[0],
    stride: tuple[int, int] = DEFAULT_WINDOW[1],
    flip: bool = False,
    precision: str = "fp32",
    amp: bool = False,
    save_predictions: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    store: Any = None,
    force: bool = False,
    outcomes: bool = True,
) -> list[dict[str, Any]]:
    """Table 6 for one model from Python, with your own checkpoints and test sets (4 records).

    ``checkpoints`` maps each training domain to its weights (``model.pth`` of
    :func:`dgbench.train.segmentation.train_segmentation`); ``test_sets`` maps each domain to its
    evaluation dataset. The same runner as ``dgbench run --protocol cross-domain``
    (:func:`dgbench.protocols.cross_domain.cross_domain`), so the records are the same.
    ``precision``: fp32, tf32 (CUDA), bf16 or fp16, recorded as run; ``amp=True`` is the older
    spelling of bf16 on CUDA (fp32 elsewhere). With a ``store``, each record's per-image counts are
    kept beside it unless ``outcomes=False`` (the CLI's ``--no-outcomes``).
    """
    from ..models.registry import create_model

    kwargs = dict(model_kwargs or {})
    inf = Inference(mode, scale, flip, tuple(crop_size), tuple(stride))  # type: ignore[arg-type]

    def loader(path: Any) -> Any:
        def load() -> torch.nn.Module:
            net = create_model(model, pretrained=path, **kwargs)
            net.weights_source = str(path)  # type: ignore[assignment]
            return net
        return load

    domains = [Domain(d, loader(checkpoints[d]), test_sets[d]) for d in checkpoints]
    if amp and precision == "fp32":
        precision = "bf16" if torch.device(device).type == "cuda" else "fp32"
    check_precision(precision, torch.device(device))
    evaluate = segmentation_evaluate(device=device, mode=mode, scale=scale, crop_size=crop_size, stride=stride,
                                     flip=flip, precision=precision, save_predictions=save_predictions, limit=limit,
                                     progress=progress, per_image=outcomes and store is not None)
    return cross_domain(model, domains, evaluate, task="segmentation", store=store, force=force,
                        preprocessing=lambda m, ds: inf.record(),
                        record_fields={"precision": precision, "limit": limit, "seed": seed})

"""Segmentation evaluation: inference over a dataset, one confusion matrix, optional saved PNGs.

Inference modes (logits are always upsampled bilinearly to the label size before the argmax):

* ``whole`` (default): the whole image at ``scale`` x its stored resolution (1.0: Cityscapes
  2048x1024, GTA5 1914x1052; the dataset's ``base_size`` applies first if it has one);
* ``slide``: crops of ``crop_size`` (h, w) every ``stride`` (h, w) pixels over the scaled image
  (zero-padded, after normalization, where the image is smaller than a crop); the logits of
  overlapping windows are averaged.

``flip=True`` also runs the horizontally mirrored image and averages the two logit maps.

``save_dir`` writes three PNGs per image, in three sub-folders so the official tool (which
matches ``{city}_{seq}_{frame}*.png`` recursively and rejects several matches) can be pointed at
one of them:

    <dir>/labelIds/<name>_labelIds.png   labelIds: CITYSCAPES_RESULTS=<dir>/labelIds csEvalPixelLevelSemanticLabeling
    <dir>/trainIds/<name>_trainIds.png   trainIds 0..18
    <dir>/color/<name>_color.png         the Cityscapes palette, for looking at
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.seg_base import (
    CLASS_NAMES,
    IGNORE_INDEX,
    LABEL_TO_TRAIN,
    SegmentationDataError,
    colorize,
    read_label,
    to_train_ids,
    train_ids_to_label_ids,
)
from ..errors import DatasetNotFoundError
from ..metrics.segmentation import ConfusionMatrix, SegMetrics
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float normalized (the models' input)."""
    m = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    if size <= crop:
        return [0]
    n = int(math.ceil((size - crop) / stride)) + 1
    return sorted({min(i * stride, size - crop) for i in range(n)})


def _slide(model: torch.nn.Module, x: torch.Tensor, num_classes: int, crop: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = crop
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:  # zero after normalization is the mean colour
        x = F.pad(x, (0, pw, 0, ph))
    H, W = x.shape[-2:]
    out = torch.zeros(n, num_classes, H, W, device=x.device, dtype=torch.float32)
    count = torch.zeros(1, 1, H, W, device=x.device, dtype=torch.float32)
    for y0 in _window_starts(H, ch, stride[0]):
        for x0 in _window_starts(W, cw, stride[1]):
            out[:, :, y0 : y0 + ch, x0 : x0 + cw] += model(x[:, :, y0 : y0 + ch, x0 : x0 + cw]).float()
            count[:, :, y0 : y0 + ch, x0 : x0 + cw] += 1
    return (out / count)[:, :, :h, :w]


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    out_size: tuple[int, int],
    *,
    num_classes: int,
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = (769, 769),
    stride: tuple[int, int] = (513, 513),
    flip: bool = False,
) -> torch.Tensor:
    """Logits ``[N, C, *out_size]`` for normalized images ``x`` (see the module docstring)."""
    if scale != 1.0:
        size = (max(1, int(round(x.shape[-2] * scale))), max(1, int(round(x.shape[-1] * scale))))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def run(inp: torch.Tensor) -> torch.Tensor:
        if mode == "whole":
            return model(inp).float()
        if mode == "slide":
            return _slide(model, inp, num_classes, crop_size, stride)
        raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")

    logits = run(x)
    if flip:
        logits = (logits + run(x.flip(-1)).flip(-1)) / 2
    if tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return logits


def save_prediction(save_dir: Path, name: str, train_ids: np.ndarray) -> None:
    """Write the labelId, trainId and colour PNGs of one prediction."""
    for sub, arr in (
        ("labelIds", train_ids_to_label_ids(train_ids)),
        ("trainIds", train_ids.astype(np.uint8)),
        ("color", colorize(train_ids)),
    ):
        d = save_dir / sub
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(d / f"{name}_{sub}.png")


@torch.no_grad()
def evaluate_segmentation(
    model: torch.nn.Module,
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = (769, 769),
    stride: tuple[int, int] = (513, 513),
    flip: bool = False,
    amp: bool = False,
    save_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[SegMetrics, ConfusionMatrix]:
    """Evaluate ``model`` on a segmentation dataset (``ds[i] -> (uint8 img, trainIds, name)``).

    One image at a time (full-resolution images of different sizes do not batch). The confusion
    matrix lives on ``device``; under DDP each rank can evaluate a shard and all-reduce
    ``cm.table()``.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    cfg = getattr(model, "pretrained_cfg", None)
    mean = getattr(cfg, "mean", IMAGENET_MEAN)
    std = getattr(cfg, "std", IMAGENET_STD)
    num_classes = getattr(dataset, "num_classes", 19)
    cm = ConfusionMatrix(num_classes, getattr(dataset, "ignore_index", IGNORE_INDEX), device=device)
    out_dir = Path(save_dir) if save_dir else None
    n = len(dataset) if limit is None else min(limit, len(dataset))
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("evaluating", total=n)
    try:
        for i in range(n):
            img, label, name = dataset[i]
            x = normalize(img.unsqueeze(0).to(device), mean, std)
            with torch.autocast(device_type=device.type, enabled=amp and device.type == "cuda"):
                logits = predict_logits(
                    model, x, tuple(label.shape[-2:]), num_classes=num_classes, mode=mode, scale=scale,
                    crop_size=crop_size, stride=stride, flip=flip,
                )
            pred = logits.argmax(1)[0]
            cm.update(pred, label.to(device))
            if out_dir is not None:
                save_prediction(out_dir, name, pred.to(torch.uint8).cpu().numpy())
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    names = getattr(dataset, "class_names", CLASS_NAMES)
    return cm.compute(names), cm


# ---------------------------------------------------------------------------------------------
# Scoring an existing prediction folder (``dgbench score``).

_CS_KEY = re.compile(r"^([A-Za-z-]+_\d+_\d+)")
_GT_SUFFIX = "_gtFine_labelIds.png"


def _cs_key(filename: str) -> str | None:
    """``{city}_{seq}_{frame}`` from a Cityscapes-style file name (as the official tool matches)."""
    m = _CS_KEY.match(filename)
    return m.group(1) if m else None


def find_gt_files(gt: Path, split: str = "val") -> dict[str, Path]:
    """Ground-truth labelId files under the Cityscapes root (``gtFine/{split}``) or any folder."""
    if not gt.exists():
        raise DatasetNotFoundError(f"ground-truth folder {gt} does not exist")
    base = gt / "gtFine" / split if (gt / "gtFine").is_dir() else gt
    if not base.is_dir():
        raise DatasetNotFoundError(f"expected {base} (the Cityscapes root's gtFine/{split}) or a gtFine/<split> folder")
    files = {}
    for p in sorted(base.rglob(f"*{_GT_SUFFIX}")):
        files[p.name[: -len(_GT_SUFFIX)]] = p
    if not files:
        raise DatasetNotFoundError(f"no *{_GT_SUFFIX} files under {base}")
    return files


def find_prediction_files(pred: Path, kind: str = "auto") -> tuple[dict[str, Path], str]:
    """Prediction PNGs keyed by ``{city}_{seq}_{frame}``, and their kind (labelIds | trainIds).

    ``auto``: dgbench's own output folder (``labelIds/`` sub-folder) -> its labelIds; files named
    ``*_trainIds.png`` -> trainIds; anything else -> labelIds, as the official tool reads.
    """
    if not pred.is_dir():
        raise DatasetNotFoundError(f"prediction folder {pred} does not exist")
    if kind == "auto":
        if (pred / "labelIds").is_dir():
            pred, kind = pred / "labelIds", "labelIds"
        else:
            pngs = list(pred.rglob("*.png"))
            kind = "trainIds" if pngs and all(p.name.endswith("_trainIds.png") for p in pngs) else "labelIds"
    if kind not in ("labelIds", "trainIds"):
        raise ValueError(f"prediction kind must be auto, labelIds or trainIds, got {kind!r}")
    found: dict[str, Path] = {}
    for p in sorted(pred.rglob("*.png")):
        key = _cs_key(p.name)
        if key is None:
            continue
        if key in found:
            raise SegmentationDataError(f"several predictions for {key}: {found[key]} and {p}")
        found[key] = p
    return found, kind


def score_predictions(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    split: str = "val",
    kind: str = "auto",
    device: str | torch.device = "cpu",
) -> SegMetrics:
    """Score a folder of predictions against Cityscapes ground truth, like the official tool.

    Every ground-truth image needs exactly one prediction of the same size (extra predictions are
    ignored, as by the official tool). Ground-truth values outside the label table are errors.
    """
    gts = find_gt_files(Path(gt_dir), split)
    preds, kind = find_prediction_files(Path(pred_dir), kind)
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise SegmentationDataError(
            f"{len(missing)} ground-truth image(s) have no prediction in {pred_dir}: "
            + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        )
    cm = ConfusionMatrix(len(CLASS_NAMES), IGNORE_INDEX, device=device)
    for key, gpath in gts.items():
        gt = to_train_ids(read_label(gpath), gpath)
        ppath = preds[key]
        p = read_label(ppath)
        if p.shape != gt.shape:
            raise SegmentationDataError(
                f"prediction {ppath} is {p.shape[1]}x{p.shape[0]} but ground truth {gpath} is {gt.shape[1]}x{gt.shape[0]}"
            )
        # labelIds -> trainIds; a void labelId becomes 255, a false negative (official behaviour).
        p_train = LABEL_TO_TRAIN[p] if kind == "labelIds" else p
        cm.update(torch.from_numpy(p_train), torch.from_numpy(gt))
    return cm.compute(CLASS_NAMES)


# ---------------------------------------------------------------------------------------------
# The Table 6 protocol: models trained on each domain, evaluated on every domain.

DATASET_NAME = "cityscapes-gta5"


def build_eval_dataset(domain: str, root: str | os.PathLike | None = None, *, split: str = "val", **options: Any) -> Any:
    """The validation set of ``domain`` (``cityscapes`` | ``gta5``) for evaluation."""
    if domain == "cityscapes":
        from ..data.cityscapes import CityscapesSegmentation

        return CityscapesSegmentation(root, split, **options)
    if domain == "gta5":
        from ..data.gta5 import GTA5Segmentation

        return GTA5Segmentation(root, split, **options)
    raise ValueError(f"segmentation domain must be 'cityscapes' or 'gta5', got {domain!r}")


def run_cross_domain_segmentation(
    model: str,
    checkpoints: dict[str, str | os.PathLike],
    test_sets: dict[str, Any],
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = (769, 769),
    stride: tuple[int, int] = (513, 513),
    flip: bool = False,
    amp: bool = False,
    save_predictions: str | os.PathLike | None = None,
    limit: int | None = None,
    dataset_name: str = DATASET_NAME,
    seed: int | None = None,
    progress: bool = False,
    store: Any = None,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Result records of Table 6 for one model: every (train domain, test domain) pair.

    ``checkpoints`` maps a training domain to the weights trained there (``model.pth`` of
    :func:`dgbench.train.segmentation.train_segmentation`); ``test_sets`` maps a domain to its
    evaluation dataset. Records (``protocol="cross-domain"``, ``task="segmentation"``) carry mIoU
    and pixel accuracy in percent plus per-class IoU; a cross-domain record's ``reference`` is its
    in-domain test and its ``drop`` the difference from it (negative = a loss). Predictions are
    saved under ``<save_predictions>/<train>-to-<test>/`` when asked.

    With a ``store`` (:class:`dgbench.results.store.ResultStore`) a cell already stored under the
    same record key (model, kwargs, weights, dataset fingerprint, domains, preprocessing, seed,
    limit) is reused instead of evaluated, unless ``force``; the new records are appended to it
    once every cell is known (an interrupted run writes nothing).
    """
    import time

    from ..models.registry import create_model
    from ..results.record import new_record, record_key

    done = store.completed_keys("cross-domain") if store is not None and not force else set()
    fresh: list[dict[str, Any]] = []

    kwargs = dict(model_kwargs or {})
    preprocessing = {"mode": mode, "scale": scale, "flip": flip}
    if mode == "slide":
        preprocessing.update(crop_size=list(crop_size), stride=list(stride))
    records: list[dict[str, Any]] = []
    for train_domain, ckpt in checkpoints.items():
        net = create_model(model, pretrained=ckpt, **kwargs)
        per_train: dict[str, dict[str, Any]] = {}
        for test_domain, ds in test_sets.items():
            n = len(ds) if limit is None else min(limit, len(ds))
            identity = dict(
                task="segmentation", protocol="cross-domain", model=getattr(net, "dgbench_name", model),
                model_kwargs=kwargs, weights_sha256=getattr(net, "weights_sha256", None), dataset=dataset_name,
                dataset_fingerprint=ds.fingerprint() if hasattr(ds, "fingerprint") else None,
                train_domain=train_domain, test_domain=test_domain, shift=None, shift_spec=None,
                preprocessing=preprocessing, precision="amp" if amp and torch.device(device).type == "cuda" else "fp32",
                limit=limit, subset=None, seed=seed,
            )
            key = record_key(identity)
            stored = store.find(key, "cross-domain") if key in done else None
            if stored is not None:
                per_train[test_domain] = stored
                continue
            save_dir = Path(save_predictions) / f"{train_domain}-to-{test_domain}" if save_predictions else None
            t0 = time.perf_counter()
            metrics, _ = evaluate_segmentation(
                net, ds, device=device, mode=mode, scale=scale, crop_size=crop_size, stride=stride, flip=flip,
                amp=amp, save_dir=save_dir, limit=limit, progress=progress,
            )
            dt = time.perf_counter() - t0
            per_train[test_domain] = new_record(
                **identity,
                weights_source=str(ckpt),
                dataset_info=ds.describe() if hasattr(ds, "describe") else {},
                reference=None,
                metrics=metrics.as_record_metrics(),
                num_samples=n,
                skipped_corrupt=0,
                device=str(device),
                batch_size=1,
                duration_s=round(dt, 3),
                images_per_s=round(n / dt, 4) if dt > 0 else None,
            )
            fresh.append(per_train[test_domain])
        in_domain = per_train.get(train_domain)
        for test_domain, rec in per_train.items():
            if in_domain is not None and test_domain != train_domain and any(rec is f for f in fresh):
                rec["reference"] = train_domain
                rec["drop"] = {
                    m: rec["metrics"][m] - in_domain["metrics"][m]
                    for m in ("miou", "pixel_acc")
                    if rec["metrics"].get(m) is not None and in_domain["metrics"].get(m) is not None
                }
            records.append(rec)
    if store is not None and fresh:
        store.append(fresh)
    return records


def segmentation_evaluate(
    *,
    device: str | torch.device = "cpu",
    mode: str = "whole",
    scale: float = 1.0,
    crop_size: tuple[int, int] = (769, 769),
    stride: tuple[int, int] = (513, 513),
    flip: bool = False,
    amp: bool = False,
    save_predictions: str | os.PathLike | None = None,
    progress: bool = False,
) -> Any:
    """An evaluate function for :func:`dgbench.protocols.cross_domain.cross_domain` (task "segmentation").

    Returns ``Evaluation(metrics={"miou", "pixel_acc"} in percent, extra={"per_class_iou": ...})``; with
    ``save_predictions`` the PNGs go to ``<dir>/<model>-on-<test set>/``.
    """
    import time

    from .cross_domain import Evaluation

    def evaluate(model: torch.nn.Module, ds: Any) -> Evaluation:
        save_dir = None
        if save_predictions:
            save_dir = Path(save_predictions) / f"{getattr(model, 'dgbench_name', 'model')}-on-{getattr(ds, 'name', 'data')}"
        t0 = time.perf_counter()
        m, _ = evaluate_segmentation(
            model, ds, device=device, mode=mode, scale=scale, crop_size=crop_size, stride=stride, flip=flip,
            amp=amp, save_dir=save_dir, progress=progress,
        )
        rec = m.as_record_metrics()
        # cross_domain() subtracts every metric for the drop, so the per-class dict travels as its
        # own record field here (run_cross_domain_segmentation keeps it inside ``metrics``).
        per_class = rec.pop("per_class_iou")
        return Evaluation(
            metrics=rec, num_samples=len(ds), duration_s=time.perf_counter() - t0, device=str(device),
            extra={"batch_size": 1, "per_class_iou": per_class,
                   "precision": "amp" if amp and torch.device(device).type == "cuda" else "fp32"},
        )

    return evaluate


# ---------------------------------------------------------------------------------------------
# The built-in pair (digit-scenes <-> typeset-digit-scenes) with its shipped checkpoints.

SCENES_DATASET = "digit-scenes"


def builtin_scene_models(spec: str | Sequence[str]) -> list[str]:
    """The small scene DeepLabs meant by ``spec``: ``ibn_b`` / ``small_resnet_ibn_b`` /
    ``deeplab_small_resnet_ibn_b``, ``all`` or a glob (on either name); only models with shipped
    checkpoints qualify."""
    import fnmatch

    from ..errors import DgbenchError
    from ..models.deeplab import scene_manifest
    from ..models.small import SMALL_MODELS, small_name_for

    shipped = [f"deeplab_{s}" for s in SMALL_MODELS if f"deeplab_{s}-digit-scenes.pth" in scene_manifest()]
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for one in specs:
        if one == "all":
            hits = shipped
        elif any(c in one for c in "*?["):
            hits = [m for m in shipped if fnmatch.fnmatch(m, one) or fnmatch.fnmatch(m.removeprefix("deeplab_"), one)]
            if not hits:
                raise DgbenchError(f"no built-in scene model matches {one!r} (shipped: {', '.join(shipped)})")
        else:
            name = "deeplab_" + small_name_for(one.removeprefix("deeplab_"))
            if name not in shipped:
                raise DgbenchError(
                    f"{one!r} has no shipped digit-scenes checkpoints; the built-in pair has {', '.join(shipped)}"
                )
            hits = [name]
        out += [h for h in hits if h not in out]
    return out


def run_builtin_scenes(
    model: str | Sequence[str] = "ibn_b",
    *,
    results: str | os.PathLike | None = None,
    store: bool = True,
    force: bool = False,
    device: str | torch.device = "cpu",
    save_predictions: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Cross-domain segmentation on the built-in digit-scenes pair: 4 records per model.

    The generic :func:`dgbench.protocols.cross_domain.cross_domain` runner with
    :func:`segmentation_evaluate`, the shipped checkpoints
    (:func:`dgbench.models.deeplab.builtin_scene_checkpoints`) and the 200 test scenes of each
    domain, whole 64x64 scenes, no flip. Records go to ``<results>/cross-domain.jsonl`` (stored
    cells reused unless ``force``; ``store=False`` writes nothing).
    """
    from ..config import results_dir
    from ..data.digit_scenes import SCENE_DOMAINS, DigitScenes
    from ..models.deeplab import builtin_scene_checkpoints
    from ..models.registry import create_model
    from ..results.store import ResultStore
    from .cross_domain import Domain, cross_domain

    rstore = ResultStore(results_dir(results)) if store else None
    evaluate = segmentation_evaluate(device=device, save_predictions=save_predictions, progress=progress)
    test_sets = {d: DigitScenes(d, "test") for d in SCENE_DOMAINS}

    def preprocessing(net: torch.nn.Module, ds: Any) -> dict[str, Any]:
        return {"mode": "whole", "scale": 1.0, "flip": False}

    out: list[dict[str, Any]] = []
    for name in builtin_scene_models(model):
        ckpts = builtin_scene_checkpoints(name)
        domains = [Domain(d, (lambda p=ckpts[d], n=name: create_model(n, pretrained=p)), test_sets[d]) for d in SCENE_DOMAINS]
        out += cross_domain(
            name, domains, evaluate, task="segmentation", store=rstore, force=force, preprocessing=preprocessing,
            record_fields={"precision": "fp32", "weights_source": "builtin"},
        )
    return out

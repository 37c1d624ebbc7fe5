"""Models from outside the zoo: an import path to a callable, or a timm model.

* ``pkg.module:build_net`` — any callable returning an ``nn.Module``, called with the JSON
  ``--model-kwargs``. Its preprocessing is the module's ``pretrained_cfg`` attribute when it sets
  one (a :class:`~dgbench.models.registry.PretrainedCfg` or a timm-style dict), else ImageNet's.
* ``timm/<name>`` — ``timm.create_model(name, pretrained=...)`` when timm is installed; mean, std,
  crop and interpolation come from timm's own pretrained config.

Both are tagged like zoo models (``dgbench_name``, ``pretrained_cfg``, ``variant_kwargs``,
``weights_sha256``), so records are fingerprinted the same way: the name is the import path (or
``timm/<name>``), and the weights' identity is the sha256 of the loaded checkpoint file or, for
weights the callable made itself, of the state dict's tensors in key order.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import DgbenchError
from .registry import PretrainedCfg

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
TIMM_PREFIX = "timm/"


def is_external(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith(TIMM_PREFIX) or bool(_IMPORT_PATH.match(name)))


def state_dict_sha256(model: nn.Module) -> str | None:
    """A content hash of the weights: key, dtype, shape and bytes of every tensor, in key order
    (None while a lazy module's parameters are still uninitialized: nothing to identify yet)."""
    state = model.state_dict()
    if any(isinstance(t, nn.parameter.UninitializedParameter) for t in state.values()):
        return None
    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        # reshape(-1): a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes;
        # for every other tensor the bytes are the same, so earlier hashes still hold.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cfg_from_timm(cfg: Any) -> PretrainedCfg:
    """timm's pretrained config (a dict or an object with the same fields) as ours."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    base = PretrainedCfg()
    return PretrainedCfg(
        input_size=tuple(get("input_size", base.input_size)),
        mean=tuple(get("mean", base.mean)),
        std=tuple(get("std", base.std)),
        interpolation=get("interpolation", base.interpolation) or base.interpolation,
        crop_pct=float(get("crop_pct", base.crop_pct) or base.crop_pct),
        num_classes=int(get("num_classes", base.num_classes) or base.num_classes),
        source=str(get("hf_hub_id", "") or get("url", "") or "timm"),
    )


def _import_callable(path: str) -> Any:
    module, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise DgbenchError(f"--model {path}: cannot import module {module!r} ({exc}); is it installed or on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise DgbenchError(f"--model {path}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise DgbenchError(f"--model {path}: {attr!r} is not callable")
    return obj


def _kind_of(value: Any) -> str:
    """``"None"``, ``"an int (3)"``, ``"a list"``: what a callable returned, with the right article."""
    if value is None:
        return "None"
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    shown = f" ({value!r})" if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else ""
    return f"{article} {name}{shown}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _build_callable(path: str, kwargs: dict[str, Any]) -> nn.Module:
    fn = _import_callable(path)
    call = f"{path.partition(':')[2]}(**{json.dumps(kwargs)})"
    try:
        model = fn(**kwargs)
    except DgbenchError:
        raise
    except Exception as exc:  # the user's code: whatever it raises is one line naming the call
        raise DgbenchError(f"--model {path}: {call} raised {_first_line(exc)}"
                           + (" (check --model-kwargs)" if isinstance(exc, TypeError) and kwargs else "")) from None
    if not isinstance(model, nn.Module):
        raise DgbenchError(f"--model {path}: {call} returned {_kind_of(model)}, not a torch.nn.Module; "
                           "the callable must build and return the model")
    cfg = getattr(model, "pretrained_cfg", None) or getattr(importlib.import_module(path.partition(":")[0]), "pretrained_cfg", None)
    model.pretrained_cfg = cfg if isinstance(cfg, PretrainedCfg) else (cfg_from_timm(cfg) if cfg else PretrainedCfg())  # type: ignore[assignment]
    return model


def _hub_unreachable(timeout: float = 2.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (None: it can, or a proxy decides).

    Without network huggingface_hub retries each file five times with back-off (about 50 s)
    before it gives up, so dgbench asks once, briefly: a TCP connection to the hub's host, in a
    thread so that a hanging DNS lookup cannot hold the run either.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    why: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
        except OSError as exc:
            why.append(f"cannot reach {host} ({exc})")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return why[0] if why else (f"no answer from {host} within {timeout:g} s" if t.is_alive() else None)


@contextlib.contextmanager
def _hub_offline(active: bool) -> Iterator[None]:
    """huggingface_hub's offline mode for one call: cached files load, nothing is requested.

    The hub reads ``HF_HUB_OFFLINE`` when it is imported, so the module constant is set as well
    as the variable (for any child process); both are restored afterwards.
    """
    if not active:
        yield
        return
    from huggingface_hub import constants

    old_env, old_flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_flag
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _build_timm(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise DgbenchError(f"--model {TIMM_PREFIX}{name}: timm is not installed (pip install timm)") from None
    from ..config import offline

    why_offline = ("DGBENCH_OFFLINE is set" if offline() else _hub_unreachable()) if pretrained else None
    try:
        with _hub_offline(why_offline is not None):
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except DgbenchError:
        raise
    except Exception as exc:  # unknown names (RuntimeError), bad kwargs (TypeError), missing files (OSError)
        if why_offline and isinstance(exc, OSError):
            raise DgbenchError(f"--model {TIMM_PREFIX}{name}: its pretrained weights are not in the local cache and "
                               f"{why_offline}; fetch them once with network, or pass --no-pretrained (random weights) "
                               "or --checkpoint FILE") from None
        raise DgbenchError(f"--model {TIMM_PREFIX}{name}: timm.create_model({name!r}, pretrained={pretrained}, "
                           f"**{json.dumps(kwargs)}) raised {_first_line(exc)}") from None
    model.pretrained_cfg = cfg_from_timm(getattr(model, "pretrained_cfg", {}) or {})
    return model


def count_outputs(model: nn.Module, input_size: tuple[int, ...], name: str) -> int:
    """How many classes ``model`` scores, from one forward pass of a blank image of ``input_size``.

    An outside model says nothing of its classifier (its config is a guess or timm's pretrained
    one), so the class count is read off its output before any result is measured. Eval mode and
    no_grad: the pass changes no weight or running statistic.
    """
    was_training = model.training
    first = next(model.parameters(), None)  # the image goes where the function put the model
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, *input_size, device=first.device if first is not None else "cpu"))
    except Exception as exc:
        raise DgbenchError(f"--model {name}: a forward pass of one {tuple(input_size)} image failed: {_first_line(exc)}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise DgbenchError(f"--model {name}: gives {got} per batch, not [batch, classes] logits; "
                           "a classification protocol needs a classifier")
    return int(out.shape[1])


def create_external(name: str, *, pretrained: bool | str | os.PathLike = True,
                    kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Build an external model; ``pretrained`` may be a checkpoint path to load (strict, weights_only)."""
    kwargs = dict(kwargs or {})
    path_given = isinstance(pretrained, (str, os.PathLike)) and not isinstance(pretrained, bool)
    if name.startswith(TIMM_PREFIX):
        model = _build_timm(name[len(TIMM_PREFIX):], bool(pretrained) and not path_given, kwargs)
    else:
        model = _build_callable(name, kwargs)
    model.dgbench_name = name  # type: ignore[assignment]
    model.variant_kwargs = kwargs  # type: ignore[assignment]
    if path_given:
        from .weights import load_state_dict_strict, read_state_dict, sha256_file

        load_state_dict_strict(model, read_state_dict(pretrained), str(pretrained))
        model.weights_sha256 = sha256_file(pretrained)  # type: ignore[assignment]
    else:
        model.weights_sha256 = state_dict_sha256(model)  # type: ignore[assignment]
    return model

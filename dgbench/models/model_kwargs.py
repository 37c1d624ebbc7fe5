"""What a zoo constructor's keyword arguments (``--model-kwargs``) may be, for one-line refusals.

The registered constructors pass ``**kwargs`` on to their network class (``ResNet``, ``DenseNet``,
``DeepLab`` and its backbone), so their own signatures do not list what they accept; a default
instance shows which classes build the model, and their signatures do.
"""
from __future__ import annotations

import inspect
import json
import re
from typing import Any

from ..errors import ModelKwargsError, suggest

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")
_TWICE = re.compile(r"multiple values for keyword argument '(\w+)'")
_NAMED_CLASS = re.compile(r"^(\w+)\.__init__\(\)")
# Set by the registry name itself (resnet50_ibn_a is variant "a"), never by --model-kwargs.
_FIXED_BY_NAME = {"variant"}


def accepted_kwargs(info: Any, named_class: str | None = None) -> list[str]:
    """Keywords the constructor of ``info`` accepts: ``num_classes`` and the defaulted parameters of
    the model's class and of ``named_class`` (a class inside it, as a TypeError names it)."""
    try:
        model = info.fn(num_classes=info.pretrained_cfg.num_classes)
    except Exception:  # only a hint is lost: the refusal still names the bad keyword
        return []
    classes = [type(model)] + [type(m) for m in model.modules() if type(m).__name__ == named_class]
    names = {"num_classes"}
    for cls in dict.fromkeys(classes):
        for p in inspect.signature(cls.__init__).parameters.values():
            keyword = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            if keyword and p.default is not p.empty and p.name not in _FIXED_BY_NAME:
                names.add(p.name)
    return sorted(names)


def kwargs_error(info: Any, kwargs: dict[str, Any], exc: Exception) -> ModelKwargsError:
    """The one line for a zoo constructor that refused ``kwargs``: the bad keyword, the nearest
    accepted one, and all of them; any other failure as its type and first line."""
    text = str(exc).strip()
    where = f"--model {info.name} with --model-kwargs '{json.dumps(kwargs)}'"
    twice = _TWICE.search(text)
    if twice:
        return ModelKwargsError(f"{where}: {twice.group(1)!r} is fixed by the model's name; leave it out")
    bad = _UNEXPECTED.search(text)
    if not bad:
        first = text.splitlines()[0] if text else ""
        return ModelKwargsError(f"{where}: {type(exc).__name__}: {first}")
    named = _NAMED_CLASS.match(text)
    accepted = accepted_kwargs(info, named.group(1) if named else None)
    near = suggest(bad.group(1), accepted)
    hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    listed = f" ({info.name} accepts: {', '.join(accepted)})" if accepted else ""
    return ModelKwargsError(f"{where}: no keyword {bad.group(1)!r}{hint}{listed}")

"""torch hub entry points: ``torch.hub.load(<this repo>, "resnet50_ibn_a", pretrained=True)``.

Every model of the dgbench zoo (and every alias) is an entry point here, under the same name as
in ``dgbench models``; the authors' constructor names (``resnet50_ibn_a``, ``resnext101_ibn_a``,
``se_resnet101_ibn_a``, ``densenet121_ibn_a``, ...) are among them, so code written for
``torch.hub.load('XingangPan/IBN-Net', ...)`` works by changing the repository only.
"""
dependencies = ["torch", "torchvision"]

from typing import Any as _Any  # noqa: E402

from dgbench.models import aliases as _aliases  # noqa: E402
from dgbench.models import create_model as _create_model  # noqa: E402
from dgbench.models import list_models as _list_models  # noqa: E402


def _entry(name: str):  # type: ignore[no-untyped-def]
    def entry(pretrained: bool = False, **kwargs: _Any):  # type: ignore[no-untyped-def]
        return _create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"dgbench model {name!r}: see `dgbench models {name}`; kwargs go to dgbench.create_model."
    return entry


for _name in [*_list_models(), *_aliases()]:
    globals()[_name] = _entry(_name)

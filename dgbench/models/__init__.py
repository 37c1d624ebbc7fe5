"""The model zoo. Importing this package registers every model (see :mod:`.registry`).

Families: :mod:`.resnet` (ResNet-18..152, every IBN variant), :mod:`.resnext`, :mod:`.senet`,
:mod:`.densenet`, :mod:`.deeplab`; other areas add theirs and are imported when present. The
built-in benchmark's small models register from :mod:`dgbench.builtin` (see :mod:`dgbench.plugins`).
"""
import importlib as _importlib

from .ibn import IBN, IBNCat, IBNConfig, PartialIN  # noqa: F401
from .registry import (  # noqa: F401
    ModelInfo,
    PretrainedCfg,
    aliases,
    create_model,
    get_pretrained_cfg,
    list_models,
    model_info,
    register_model,
    resolve_name,
)
from .resnet import BasicBlock, Bottleneck, ResNet  # noqa: F401,E402

# Model modules register their constructors on import. Modules of areas not built yet in this
# checkout are skipped; an import error *inside* an existing module still surfaces.
for _name in ("resnext", "senet", "densenet", "deeplab"):
    try:
        _importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_name}":
            raise

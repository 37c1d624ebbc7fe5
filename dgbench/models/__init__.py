"""The model zoo. Importing this package registers every model (see :mod:`.registry`).

Families: :mod:`.resnet` (ResNet-18..152, every IBN variant), :mod:`.resnext`, :mod:`.senet`,
:mod:`.densenet`; other areas add theirs (``small``, ``deeplab``) and are imported when present.
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
for _name in ("resnext", "senet", "densenet", "small", "deeplab"):
    try:
        _importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_name}":
            raise

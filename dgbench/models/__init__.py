"""The model zoo. Importing this package registers every model (see :mod:`.registry`)."""
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

# Model modules register their constructors on import.
from . import resnet  # noqa: F401,E402

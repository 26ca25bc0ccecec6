"""evit-deploy: EfficientViT models from PyTorch to validated, benchmarked deployment artifacts.

The public names below are imported on first use, so ``import evit_deploy`` (and the CLI's start-up) does not
pay for torch until a model is actually needed.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import CheckpointError, EvitError, UnknownModelError

__version__ = "0.1.0"

_LAZY = {
    "ModelCard": "evit_deploy.zoo",
    "RandomWeightsWarning": "evit_deploy.zoo",
    "create_model": "evit_deploy.zoo",
    "get_card": "evit_deploy.zoo",
    "list_models": "evit_deploy.zoo",
    "Predictor": "evit_deploy.predict",
}

__all__ = ["CheckpointError", "EvitError", "UnknownModelError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'evit_deploy' has no attribute {name!r}")

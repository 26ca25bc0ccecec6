"""evit-deploy: EfficientViT models from PyTorch to validated, benchmarked deployment artifacts.

The public names below are imported on first use, so ``import evit_deploy`` (and the CLI's start-up) does not
pay for torch until a model is actually needed.
"""

from __future__ import annotations

from ._lazy import lazy_names
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

__getattr__ = lazy_names("evit_deploy", _LAZY, globals())

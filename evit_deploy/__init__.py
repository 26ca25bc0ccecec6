"""evit-deploy: EfficientViT models from PyTorch to validated, benchmarked deployment artifacts."""

from .errors import CheckpointError, EvitError, UnknownModelError
from .zoo import ModelCard, RandomWeightsWarning, create_model, get_card, list_models

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "EvitError", "ModelCard", "RandomWeightsWarning", "UnknownModelError", "__version__",
    "create_model", "get_card", "list_models",
]

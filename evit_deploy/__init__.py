"""evit-deploy: EfficientViT models from PyTorch to validated, benchmarked deployment artifacts."""

from .errors import CheckpointError, EvitError, UnknownModelError
from .zoo import ModelCard, RandomWeightsWarning, create_model, get_card, list_models

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "EvitError", "ModelCard", "Predictor", "RandomWeightsWarning", "UnknownModelError",
    "__version__", "create_model", "get_card", "list_models",
]


def __getattr__(name: str) -> type:
    """Lazy exports: `evit_deploy.Predictor` imports the prediction package on first use."""
    if name == "Predictor":
        from .predict import Predictor

        return Predictor
    raise AttributeError(f"module 'evit_deploy' has no attribute {name!r}")

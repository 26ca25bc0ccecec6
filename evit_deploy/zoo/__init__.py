"""The EfficientViT model zoo: cards (declarative facts) and the registry that builds modules from them."""

from .cards import TASKS, ModelCard, all_cards, get_card, list_models
from .registry import RandomWeightsWarning, build_model, create_model, meta_model, register_task

__all__ = [
    "TASKS", "ModelCard", "RandomWeightsWarning", "all_cards", "build_model", "create_model", "get_card",
    "list_models", "meta_model", "register_task",
]

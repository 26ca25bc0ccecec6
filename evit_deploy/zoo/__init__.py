"""The EfficientViT model zoo: cards (declarative facts) and the registry that builds modules from them.

The cards are plain data (no torch); the registry's names are imported on first use, so code that only needs a
card (argument checks, listings) does not pay for importing torch.
"""

from __future__ import annotations

from .._lazy import lazy_names
from .cards import TASKS, ModelCard, all_cards, get_card, list_models

_REGISTRY = dict.fromkeys(("RandomWeightsWarning", "build_model", "create_model", "meta_model", "register_task"),
                          "evit_deploy.zoo.registry")

__all__ = ["TASKS", "ModelCard", "all_cards", "get_card", "list_models", *_REGISTRY]

__getattr__ = lazy_names("evit_deploy.zoo", _REGISTRY, globals())

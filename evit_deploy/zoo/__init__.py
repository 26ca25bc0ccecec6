"""The EfficientViT model zoo: cards (declarative facts) and the registry that builds modules from them.

The cards are plain data (no torch); the registry's names are imported on first use, so code that only needs a
card (argument checks, listings) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .cards import TASKS, ModelCard, all_cards, get_card, list_models

_REGISTRY = ("RandomWeightsWarning", "build_model", "create_model", "meta_model", "register_task")

__all__ = ["TASKS", "ModelCard", "all_cards", "get_card", "list_models", *_REGISTRY]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY:
        value = getattr(importlib.import_module("evit_deploy.zoo.registry"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'evit_deploy.zoo' has no attribute {name!r}")

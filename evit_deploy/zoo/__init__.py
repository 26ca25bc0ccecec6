"""The EfficientViT model zoo: cards (declarative facts) and the registry that builds modules from them.

The cards are plain data (no torch); the registry's names are imported on first use, so code that only needs a
card (argument checks, listings) does not pay for importing torch.
"""

from __future__ import annotations

from .._lazy import lazy_names
from ..tasks import task_spec
from .cards import ModelCard, all_cards, get_card

_REGISTRY = dict.fromkeys(("RandomWeightsWarning", "build_model", "create_model", "meta_model"),
                          "evit_deploy.zoo.registry")

__all__ = ["ModelCard", "all_cards", "get_card", "list_models", *_REGISTRY]

__getattr__ = lazy_names("evit_deploy.zoo", _REGISTRY, globals())


def list_models(task: str | None = None) -> list[str]:
    """Zoo names, optionally only those of one task (``cls``, ``seg`` or ``sam``; another is a one-line error)."""
    if task is not None:
        task_spec(task)
    return [name for name, card in all_cards().items() if task is None or card.task == task]

"""Model cards: the declarative facts of each zoo variant, read from the YAML files in ``models/``."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .._paths import data_dir
from ..errors import EvitError, UnknownModelError
from ..processing import Preprocess

_FILE_KEYS = {"family", "task", "dataset", "num_classes", "class_names", "archs", "defaults", "variants", "datasets",
              "preprocess"}


@dataclass(frozen=True)
class ModelCard:
    """Everything the zoo knows about one variant (see models/README.md for the fields)."""

    name: str
    family: str
    task: str
    dataset: str
    input_size: tuple[int, int]
    preprocess: Preprocess
    backbone: dict[str, Any]
    head: dict[str, Any]
    act: str
    norm_eps: float
    checkpoint: str
    num_classes: int | None = None
    class_names: str | None = None
    published: dict[str, float] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None  # SAM: (prompt/mask frame side, encoder input side)
    arch: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; values of ``override`` win."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _cards_from_file(path: Path) -> list[ModelCard]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EvitError(f"model card {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    doc = {k: v for k, v in doc.items() if not k.startswith("_")}
    unknown = set(doc) - _FILE_KEYS
    if unknown:
        raise EvitError(f"model card {path}: unknown keys {sorted(unknown)}")
    shared = {k: doc[k] for k in ("family", "task", "dataset", "num_classes", "class_names", "preprocess") if k in doc}
    fields = {f.name for f in dataclasses.fields(ModelCard)}
    cards = []
    for name, variant in doc["variants"].items():
        merged = _merge(shared, doc.get("defaults", {}))
        merged = _merge(merged, doc.get("archs", {})[variant["arch"]])
        merged = _merge(merged, doc.get("datasets", {}).get(variant.get("dataset", merged.get("dataset")), {}))
        merged = _merge(merged, variant)
        unknown = set(merged) - fields
        if unknown:
            raise EvitError(f"model card {path}, variant {name}: unknown fields {sorted(unknown)}")
        merged["input_size"] = tuple(merged["input_size"])
        merged["preprocess"] = Preprocess.from_dict(merged.get("preprocess") or {}, f"model card {path}, {name}")
        if merged.get("image_size"):
            merged["image_size"] = tuple(merged["image_size"])
        cards.append(ModelCard(name=name, source=path.name, **merged))
    return cards


@lru_cache(maxsize=1)
def all_cards() -> dict[str, ModelCard]:
    """Every card of the zoo, by name, in file then declaration order."""
    cards: dict[str, ModelCard] = {}
    for path in sorted(data_dir("models").glob("*.yaml")):
        for card in _cards_from_file(path):
            if card.name in cards:
                raise EvitError(f"model {card.name} is declared twice ({cards[card.name].source}, {path.name})")
            cards[card.name] = card
    return cards


def get_card(name: str) -> ModelCard:
    """The card of a zoo name; unknown names raise with the closest matches."""
    cards = all_cards()
    if name in cards:
        return cards[name]
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `evit-deploy models` for the list"
    raise UnknownModelError(f"unknown model '{name}'{hint}")

"""Published EfficientViT figures (``latency/published.yaml``): accuracy, MACs and the paper's hardware rows."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from .._paths import data_dir
from ..errors import EvitError


@cache
def published() -> dict[str, Any]:
    path = data_dir("latency") / "published.yaml"
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EvitError(f"cannot read the published figures {path}: {exc}") from None


def model_facts(model: str) -> dict[str, Any] | None:
    """Published accuracy / params / MACs of one model, or None."""
    return next((m for m in published()["models"] if m["model"] == model), None)


def hardware_rows(model: str | None = None, family: str | None = None) -> list[dict[str, Any]]:
    """Published latency/throughput rows with device name and settings, for one model or a family prefix."""
    doc = published()
    rows = []
    for row in doc["hardware"]:
        if model and row["model"] != model:
            continue
        if family and not row["model"].startswith(family):
            continue
        rows.append(row | {"device_name": doc["devices"][row["device"]], **doc["settings"], "source": doc["source"]})
    return rows


def family_prefix(model: str) -> str:
    """``efficientvit-b1-r224`` → ``efficientvit-b``; ``efficientvit-seg-l1-ade20k`` → ``efficientvit-seg-``."""
    parts = model.split("-")
    if parts[1] in ("seg", "sam"):
        return "-".join(parts[:2]) + "-"
    return f"{parts[0]}-{parts[1][0]}"

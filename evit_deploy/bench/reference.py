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


def hardware_rows(model: str | None = None, family: str | None = None, device_class: str | None = None
                  ) -> list[dict[str, Any]]:
    """Published latency/throughput rows with device name and settings, for one model or a family prefix, and
    optionally one device class (``phone``, ``jetson``, ...). A row's own engine/precision/source override the
    file's ``settings`` (the phone rows are TFLite fp32, the others TensorRT fp16)."""
    doc = published()
    devices = device_class_devices(device_class) if device_class else None
    rows = []
    for row in doc["hardware"]:
        if model and row["model"] != model:
            continue
        if family and not row["model"].startswith(family):
            continue
        if devices is not None and row["device"] not in devices:
            continue
        rows.append({**doc["settings"], "source": doc["source"], **row, "device_name": doc["devices"][row["device"]]})
    return rows


def device_class_devices(device_class: str) -> list[str]:
    """The published devices a measured device of ``device_class`` is compared with."""
    classes = published().get("device_classes", {})
    if device_class not in classes:
        raise EvitError(f"unknown device class '{device_class}' (known: {', '.join(classes)})")
    return list(classes[device_class])


def family_prefix(model: str) -> str:
    """``efficientvit-b1-r224`` → ``efficientvit-b``; ``efficientvit-seg-l1-ade20k`` → ``efficientvit-seg-``."""
    parts = model.split("-")
    if parts[1] in ("seg", "sam"):
        return "-".join(parts[:2]) + "-"
    return f"{parts[0]}-{parts[1][0]}"

"""Golden inputs and PyTorch reference outputs of a device bundle: the export's validation inputs (its photos and
noise, pre-processed exactly as its validation does), written as the device tools read them (raw ``.bin`` in the
model's stored dtype, C order) and as ``.npy``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import Manifest, check_name
from ..export import StepReporter, silent_step

GOLDEN = "golden"


@dataclass
class GoldenSample:
    """One validation batch: its label (``photo:astronaut``), a file stem, the inputs and PyTorch's outputs."""

    label: str
    stem: str
    inputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]


def stem_of(index: int, label: str) -> str:
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")[:60]


def golden_samples(folder: Path, manifest: Manifest, role: str, weights: str | None,
                   step: StepReporter = silent_step) -> list[GoldenSample]:
    """The validation inputs of ``role`` and the PyTorch outputs on them, exactly as the export's validation made
    them (:func:`evit_deploy.export.reference_samples`: same weights, transforms and pre-processing)."""
    from ..export import reference_samples

    return [GoldenSample(s.label, stem_of(i, s.label), {check_name(k, "input name"): v for k, v in s.inputs.items()},
                         {check_name(k, "output name"): v for k, v in s.outputs.items()})
            for i, s in enumerate(reference_samples(folder, manifest, role, weights, step))]


def stored(value: np.ndarray, dtype: str, quantization: dict[str, Any] | None) -> np.ndarray:
    """``value`` (float32) as the model stores the tensor: quantized with its scale/zero point for int8 I/O."""
    if quantization is None:
        return np.ascontiguousarray(value, dtype=dtype)
    info = np.iinfo(np.dtype(dtype))
    q = np.round(value / quantization["scale"]) + quantization["zero_point"]
    return np.ascontiguousarray(np.clip(q, info.min, info.max), dtype=dtype)


def dequantized(value: np.ndarray, quantization: dict[str, Any] | None) -> np.ndarray:
    """A stored output back to float32 (int8 outputs: scale * (q - zero_point))."""
    if quantization is None:
        return value.astype(np.float32)
    return ((value.astype(np.float32) - quantization["zero_point"]) * quantization["scale"]).astype(np.float32)


def write_golden(folder: Path, samples: list[GoldenSample], io: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Write every sample under ``folder/golden`` and return their ``bundle.json`` entries. ``io``: stored dtype
    and quantization per input name."""
    entries = []
    (folder / GOLDEN / "inputs").mkdir(parents=True, exist_ok=True)
    (folder / GOLDEN / "reference").mkdir(parents=True, exist_ok=True)
    for s in samples:
        inputs = {}
        for name, value in s.inputs.items():
            spec = io.get(name, {"dtype": "float32", "quantization": None})
            raw = stored(value, spec["dtype"], spec["quantization"])
            base = f"{GOLDEN}/inputs/{s.stem}.{name}"
            raw.tofile(folder / f"{base}.bin")
            np.save(folder / f"{base}.npy", raw)
            inputs[name] = {"bin": f"{base}.bin", "npy": f"{base}.npy", "shape": list(raw.shape),
                            "dtype": str(raw.dtype)}
        reference = {}
        for name, value in s.reference.items():
            path = f"{GOLDEN}/reference/{s.stem}.{name}.npy"
            np.save(folder / path, value.astype(np.float32))
            reference[name] = {"npy": path, "shape": list(value.shape), "dtype": "float32"}
        entries.append({"label": s.label, "stem": s.stem, "inputs": inputs, "reference": reference})
    return entries

"""int8 with a calibrator (TensorRT 10.x): the pre-processed calibration inputs saved with the plan
(``calibration/<role>.npy``) and the IInt8EntropyCalibrator2 that feeds them to the builder, which writes the
calibration cache (``calibration/<role>.cache``). TensorRT 11 has no calibrator."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EvitError
from ...files import atomic_write
from .plan import EnginePlan


def write_calibration(folder: Path, plan: EnginePlan, inputs: list[Any], source: str) -> Path:
    """Save the pre-processed calibration inputs (``[N,3,H,W]`` float32) for ``plan`` as ``calibration/<role>.npy``."""
    if plan.calibration is None:
        raise EvitError(f"the {plan.role} plan is not int8: it has no calibration inputs")
    array = np.ascontiguousarray(np.concatenate([np.asarray(x, dtype=np.float32) for x in inputs]))
    (name, expected), = plan.static_shapes.items()
    if list(array.shape[1:]) != expected[1:]:
        raise EvitError(f"calibration inputs of shape {list(array.shape)} do not fit {name} {expected}")
    path = Path(folder) / plan.calibration["inputs"]
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, buffer.getvalue())
    plan.calibration["source"] = f"{source}; {array.shape[0]} inputs of {list(array.shape[1:])} float32"
    return path


def _calibrator(trt: Any, data: np.ndarray, batch: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding ``data`` ([N,...] float32) ``batch`` rows at a time from a CUDA buffer."""
    import torch

    if len(data) < batch:
        data = np.concatenate([data] * (batch // len(data) + 1))
    count = len(data) // batch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.buffer = torch.empty((batch, *data.shape[1:]), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= count:
                return None
            rows = np.ascontiguousarray(data[self.index * batch : (self.index + 1) * batch], dtype=np.float32)
            self.buffer.copy_(torch.from_numpy(rows))
            torch.cuda.synchronize()
            self.index += 1
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, blob: Any) -> None:
            atomic_write(cache, bytes(memoryview(blob)))

    return EntropyCalibrator()


def set_calibrator(trt: Any, builder: Any, config: Any, folder: Path, plan: EnginePlan) -> str:
    """Give ``config`` the entropy calibrator of the int8 ``plan`` (and a calibration profile at the smallest
    batch for dynamic shapes); returns where the calibration inputs came from."""
    data = np.load(folder / plan.calibration["inputs"], mmap_mode="r")
    (name, shape), = plan.static_shapes.items()
    batch = plan.shapes[name]["min"][0] if name in plan.shapes else shape[0]
    config.int8_calibrator = _calibrator(trt, data, batch, folder / plan.calibration["cache"])
    if plan.shapes:
        calib_profile = builder.create_optimization_profile()
        calib_shape = [batch, *data.shape[1:]]
        calib_profile.set_shape(name, calib_shape, calib_shape, calib_shape)
        config.set_calibration_profile(calib_profile)
    return plan.calibration.get("source", "")

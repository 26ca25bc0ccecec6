"""ai-edge-quantizer recipes that need no calibration, applied to a written float ``.tflite`` in place.

- ``fp16``: weight-only float16 (``FLOAT_CASTING`` of conv/FC weights), dequantized to float32 at load;
- ``int8-dynamic``: ``dynamic_wi8_afp32``: int8 per-channel weights, activations quantized at run time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...host import library_version
from ...optional import require
from ..litert_quiet import quiet_litert


def _rewrite(path: Path, configure: Callable[[Any], None]) -> None:
    """Quantize the float model at ``path`` with the quantizer ``configure`` sets up; the result replaces it."""
    quantizer = require("ai_edge_quantizer.quantizer", "TFLite quantization")
    with quiet_litert(), tempfile.TemporaryDirectory(prefix="evit-tflite-") as tmp:
        source = Path(tmp) / "float.tflite"
        shutil.copyfile(path, source)
        q = quantizer.Quantizer(str(source))
        configure(q)
        result = q.quantize(None, enable_progress_bar=False, enable_progress_report=False)
        path.unlink()
        result.export_model(str(path))
    path.chmod(0o644)  # written through mmap with the executable bit


def weight_only_fp16(path: Path) -> list[str]:
    """fp16 weights, fp32 compute: the float model at ``path`` rewritten; returns the artifact notes."""
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    _rewrite(path, lambda q: q.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED,
                                                        num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING))
    return [f"ai-edge-quantizer {library_version('ai-edge-quantizer') or '?'} weight-only float16 (FLOAT_CASTING on "
            "CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED weights); dequantized to float32 when the model is loaded, "
            "compute in float32"]


def dynamic_int8(path: Path) -> list[str]:
    """int8 weights, activations quantized at run time: the float model at ``path`` rewritten; returns notes."""
    from ai_edge_quantizer import recipe

    _rewrite(path, lambda q: q.load_quantization_recipe(recipe.dynamic_wi8_afp32()))
    return [f"ai-edge-quantizer {library_version('ai-edge-quantizer') or '?'} dynamic_wi8_afp32: int8 symmetric "
            "per-channel weights, float32 activations quantized at run time, float32 I/O"]

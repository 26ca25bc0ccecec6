"""bf16 recipe: OpenVINO's CPU plugin computes the fp32 IR in bf16 (AVX512_BF16/AMX), pinned by the profile."""

from __future__ import annotations

from .registry import Recipe, add_recipe

BF16_OPENVINO = add_recipe(Recipe(
    "bf16-compute", "bf16", ("openvino",), "runtime",
    "the fp32 IR, computed in bf16 by OpenVINO's CPU plugin: INFERENCE_PRECISION_HINT=bf16 from the profile's "
    "openvino.inference_precision, pinned in the IR and export.json; refused on CPUs without native bf16"))

"""Full-integer int8: Q/DQ ONNX (:mod:`.onnx_qdq`), per-layer sensitivity and the accuracy-aware fallback
(:mod:`.search`), and the ONNX exporter's int8 step (:mod:`.onnx_unit`). The TFLite exporter uses the same search
with ai-edge-quantizer recipes."""

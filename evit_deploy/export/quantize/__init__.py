"""The quantizers behind the int8 precision recipes (:mod:`evit_deploy.export.recipes.int8`): Q/DQ and dynamic int8
ONNX (:mod:`.onnx_qdq`), per-layer sensitivity and the accuracy-aware fallback (:mod:`.search`), the ONNX, OpenVINO
and TFLite int8 steps around them (:mod:`.onnx_unit`, :mod:`.openvino_nncf`, :mod:`.tflite_int8`) and the
ai-edge-quantizer recipes that need no calibration (:mod:`.tflite_recipes`)."""

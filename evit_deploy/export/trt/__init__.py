"""TensorRT engines from the prepared ONNX: build plans (:mod:`.plan`), the layers kept fp32 (:mod:`.onnx_layers`),
the Jetson build bundle with its trtexec lines (:mod:`.bundle`), the Python API
build (:mod:`.builder`) and the folder rebuild behind ``evit-deploy build-engine`` (:mod:`.rebuild`).

What the runtime shares with the builder (TensorRT import and logger, sidecars, GPU facts, the compatibility
check) lives in :mod:`evit_deploy.runtime`; these modules import it, never the other way round.
"""

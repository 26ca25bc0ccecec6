"""Triton Inference Server: a model repository for an export folder (``evit-deploy triton EXPORT_DIR --repo DIR``).

For an export of model ``M`` the repository holds:

- one model per graph: ``M-model`` (cls/seg) or ``M-encoder`` + ``M-decoder`` (SAM), platform ``onnxruntime_onnx``
  (``1/model.onnx``) or ``tensorrt_plan`` (``1/model.plan``), with ``dynamic_batching`` when the graph's batch
  axis is dynamic (``max_batch_size`` = the profile's maximum), else ``max_batch_size: 0`` and full shapes;
- ``M``: a Python-backend pipeline model (``IMAGE`` encoded bytes + optional ``OPTIONS`` JSON → ``RESULT``
  JSON) running :class:`evit_deploy.Predictor`'s pre/post-processing and calling the graphs through BLS;
- ``M/README.md``: how to run ``tritonserver --model-repository`` and query it.

Modules: ``pbtxt`` (protobuf text writer; nothing here needs tritonclient), ``configs`` (the models' configs),
``repository`` (``write_repository``: staged, confined to the repository folder), ``backend`` (the pipeline
model that runs inside Triton; imported by the generated ``model.py``, not here, so writing a repository does not
load the predictor).
"""

from .configs import graph_config, pipeline_config
from .pbtxt import Sym, to_pbtxt
from .repository import TritonModel, repository_readme, write_repository

__all__ = ["Sym", "TritonModel", "graph_config", "pipeline_config", "repository_readme", "to_pbtxt",
           "write_repository"]

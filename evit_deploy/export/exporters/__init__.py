"""Exporters by format. Importing this package registers the built-in ones, and the precision recipes they ask
for (:mod:`evit_deploy.export.recipes`)."""

from ..recipes import recipes_for as _recipes_for  # noqa: F401  (importing it registers the precision recipes)
from . import compiled as _compiled  # noqa: F401  (registers torch-compiled)
from . import onnx as _onnx  # noqa: F401  (registers onnx, ort)
from . import openvino as _openvino  # noqa: F401  (registers openvino; openvino and nncf imported lazily)
from . import tensorrt as _tensorrt  # noqa: F401  (registers trt-engine, trt-bundle; tensorrt imported lazily)
from . import tflite as _tflite  # noqa: F401  (registers tflite; its packages are imported lazily)
from .base import EXPORTERS, Artifact, ExportContext, Exporter, register_exporter

__all__ = ["EXPORTERS", "Artifact", "ExportContext", "Exporter", "register_exporter"]

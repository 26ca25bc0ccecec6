"""Exporters by format. Importing this package registers the built-in ones."""

from . import onnx as _onnx  # noqa: F401  (registers onnx, ort)
from .base import EXPORTERS, Artifact, ExportContext, Exporter, register_exporter

__all__ = ["EXPORTERS", "Artifact", "ExportContext", "Exporter", "register_exporter"]

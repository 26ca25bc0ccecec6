"""Optional dependencies: import one on first use, or say in one line which extra of this package installs it.

Heavy or platform-specific libraries (ONNX Runtime, LiteRT, FastAPI, ...) are extras (pyproject.toml), checked
with :func:`require` before they are imported, so a missing extra is always the same clear one-line error: a module
that imports one at its top calls ``require`` for it first (``serve/app.py``; tests/test_import_graph.py checks that
no other module-level import of an extra exists), and otherwise the library is imported inside the function that
uses it, after the command, exporter or runtime backend (``Backend.requires``) that leads there has called
``require``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency, one_line

EXTRAS = {  # importable module → the extra that installs it
    "onnx": "onnx", "onnxruntime": "onnx", "onnxsim": "onnx", "onnxscript": "onnx",
    "litert_torch": "tflite", "ai_edge_litert": "tflite", "ai_edge_quantizer": "tflite",
    "fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve", "multipart": "serve",
    "cv2": "eval", "pycocotools": "eval", "cityscapesscripts": "eval",
    "openvino": "openvino", "nncf": "openvino",
    "ray": "ray",
    "tritonclient": "triton",
    "av": "video",
    "transformers": "compare", "segment_anything": "compare",
    "timm": "compare-timm", "fastervit": "compare-timm",
    "model_signing": "sign",
}


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`MissingDependency` saying that ``purpose`` needs it and how to install it
    (also when it is installed but fails to import, e.g. a torchvision built for another torch)."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    needs = f"the [{extra}] extra" if extra else top
    hint = f"pip install 'evit-deploy[{extra}]'" if extra else f"pip install {top}"
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{purpose} needs {needs} ({top} is not installed: {one_line(exc, 120)}): {hint}"
                                ) from None
    except Exception as exc:  # installed but broken: any error raised by its import code
        raise MissingDependency(f"{purpose} needs {needs}; {top} is installed but cannot be imported "
                                f"({type(exc).__name__}: {one_line(exc, 120)})") from None

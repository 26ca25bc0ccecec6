"""The files an ONNX graph refers to by name: the locations of its external data (tensors kept outside the
``.onnx`` file, e.g. the weights of a graph over protobuf's 2 GB limit in ``model.onnx.data``).

ONNX Runtime opens every location a graph names, relative to the graph's folder. :mod:`evit_deploy.artifacts`
lists them with :func:`external_data_locations` before any runtime sees the graph, and accepts only the
artifact's declared, hash-checked companions.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import EvitError, one_line
from .optional import require

_KEY = b"location"  # the external-data key ONNX Runtime reads; a graph without these bytes names no file


def _mentions_location(path: Path) -> bool:
    """Whether the file's bytes contain ``location`` at all (a fast scan that spares parsing most graphs)."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return view.find(_KEY) >= 0


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph`` that may hold data: initializers, sparse initializers, and the tensors of node
    attributes, in subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def external_data_locations(path: str | Path) -> list[str]:
    """The external-data locations the ONNX graph at ``path`` names (as written, sorted, each once); a tensor
    stored externally without a location is listed as ``""``."""
    path = Path(path)
    if not _mentions_location(path):
        return []
    onnx = require("onnx", "checking the external data of an ONNX graph")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds for a corrupt file
        raise EvitError(f"{path} is not a readable ONNX graph ({one_line(exc, 160)})") from None
    found = set()
    tensors = list(_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            found.add(next((entry.value for entry in tensor.external_data if entry.key == "location"), ""))
    return sorted(found)

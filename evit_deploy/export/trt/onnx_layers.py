"""Which layers of a TensorRT engine stay fp32, read from the prepared ONNX (no TensorRT needed).

- fp16: in a mixed fp16 ONNX (``precision.mixed_fp16``) the nodes whose outputs the graph declares float32 (the
  fp32 islands, found from the ONNX value types);
- int8: in the fp32 graph an int8 build calibrates, the precision-sensitive nodes (attention
  matmuls/reductions/division, norms, resizes).

TensorRT names a parsed layer after its ONNX node (helper layers that one node expands into get suffixed
names) and its output tensors after the node's outputs; the Python API path (:mod:`.builder`) marks layers by
output tensor name (:func:`select_fp32_layers`), the ``trtexec`` path (:mod:`.bundle`) by node name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16
_NO_LAYER_OPS = frozenset({"Constant"})  # the ONNX parser adds no layer for these
_NORM_OPS = frozenset({"LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization"})
_NORM_SCOPE = re.compile(r"/(norm|ln)[\w.]*/")
_HEAVY_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})  # what int8 is for: they stay quantizable
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})  # the quantization itself, in a Q/DQ graph


@dataclass
class Fp32Layer:
    """An ONNX node kept in fp32: TensorRT's layer of the same name, whose outputs carry these tensor names."""

    node: str
    outputs: list[str]


def _load(model: Any) -> Any:
    import onnx

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(str(model), load_external_data=False)
    return model


def value_types(model: Any) -> dict[str, int]:
    """ONNX element type of every tensor (inputs, initializers, node outputs), after shape inference."""
    import onnx

    model = _load(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; the declared types are used then
        inferred = model
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def layer_name(node: Any) -> str:
    """The name TensorRT's ONNX parser gives the layer of ``node`` (``node_of_<output>`` for unnamed nodes)."""
    return node.name or f"node_of_{node.output[0]}"


def fp32_islands(model: Any) -> list[Fp32Layer]:
    """Nodes of a mixed fp16 graph whose every output is declared float32 (the fp32 islands, Casts into fp32
    included). Empty for a graph with no float16 tensor (an fp32 graph has no islands)."""
    model = _load(model)
    types = value_types(model)
    if _FLOAT16 not in types.values():
        return []
    layers = []
    for node in model.graph.node:
        outputs = [o for o in node.output if o]
        if node.op_type in _NO_LAYER_OPS or not outputs:
            continue
        if all(types.get(o) == _FLOAT for o in outputs):
            layers.append(Fp32Layer(layer_name(node), outputs))
    return layers


def attention_scopes(model: Any) -> list[str]:
    """Name scopes of the LiteMLA attention modules (the scope holding a ``kernel_func`` ReLU)."""
    scopes = []
    for node in _load(model).graph.node:
        if node.op_type == "Relu" and "/kernel_func" in node.name:
            scope = node.name.split("/kernel_func")[0] + "/"
            if scope not in scopes:
                scopes.append(scope)
    return scopes


def int8_sensitive_layers(model: Any) -> list[Fp32Layer]:
    """Nodes of an fp32 graph an int8 build keeps in fp32: inside each attention module everything but its
    convolutions (matmuls, reductions, the normaliser clamp and division, reshapes), every normalisation and
    every resize, as in the mixed fp16 form's islands. Float outputs only."""
    model = _load(model)
    types = value_types(model)
    scopes = attention_scopes(model)
    layers = []
    for node in model.graph.node:
        outputs = [o for o in node.output if o]
        if node.op_type in _NO_LAYER_OPS or node.op_type in _HEAVY_OPS or node.op_type in _QDQ_OPS or not outputs:
            continue
        if not all(types.get(o) == _FLOAT for o in outputs):
            continue
        name = layer_name(node)
        in_attention = any(name.startswith(s) and "/proj/" not in name[len(s) - 1:] for s in scopes)
        is_norm = node.op_type in _NORM_OPS or bool(_NORM_SCOPE.search(name))
        if in_attention or is_norm or node.op_type == "Resize":
            layers.append(Fp32Layer(name, outputs))
    return layers


def fp32_layers_for(model: Any, precision: str) -> list[Fp32Layer]:
    """The layers an engine of ``precision`` keeps in fp32 (nothing to mark for an fp32 engine)."""
    if precision == "fp16":
        return fp32_islands(model)
    if precision == "int8":
        return int8_sensitive_layers(model)
    return []


def fp32_constants(model: Any) -> set[str]:
    """Float32 initializers and Constant-node outputs (in a mixed graph, only fp32 islands consume them)."""
    model = _load(model)
    names = {init.name for init in model.graph.initializer if init.data_type == _FLOAT}
    constants = [o for node in model.graph.node if node.op_type in _NO_LAYER_OPS for o in node.output]
    types = value_types(model) if constants else {}
    return names | {o for o in constants if types.get(o) == _FLOAT}


def select_fp32_layers(layers: list[tuple[str, list[str], list[str]]], fp32_tensors: set[str],
                       onnx_tensors: set[str], constants: set[str] = frozenset()) -> list[str]:
    """Names of the parsed network's layers to constrain to fp32.

    ``layers``: (name, float input tensor names, float output tensor names) in network order. A layer is
    marked when one of its outputs is an fp32 tensor of the ONNX, or when it is a helper layer the parser
    added (no output named in the ONNX) whose float inputs all come from marked layers, fp32 tensors or fp32
    ``constants`` (and not from constants alone).
    """
    marked, fp32 = [], set(fp32_tensors)
    for name, inputs, outputs in layers:
        if not outputs:
            continue
        direct = any(o in fp32_tensors for o in outputs)
        helper = (not any(o in onnx_tensors for o in outputs) and any(i in fp32 for i in inputs)
                  and all(i in fp32 or i in constants for i in inputs))
        if direct or helper:
            marked.append(name)
            fp32.update(outputs)
    return marked

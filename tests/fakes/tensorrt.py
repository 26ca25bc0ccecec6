"""A stand-in for the ``tensorrt`` Python module (no TensorRT or NVIDIA GPU on the machines the suite runs on).

What it checks: that our engine builder (:mod:`evit_deploy.export.trt.builder`) calls the TensorRT API it means to
call — network creation flags (strongly typed or not), builder flags (FP16, precision constraints, TF32 off for
fp32), the workspace pool, optimisation profiles with their shapes, the fp32 islands marked on the right layers
(including the helper layers the real ONNX parser adds for each Pad) and the timing cache — and writes the engine,
sidecar and cache it gets back. Its "parser" turns every ONNX node into one layer (plus a suffixed helper layer
per Pad), with the tensor types read from the ONNX.

What it does not check: anything TensorRT itself does — parsing, layer fusion, kernel choice, whether the
precision constraints are honoured, engine numerics or speed. The engine built here is the bytes ``ENGINE``.
``tests/test_tensorrt.py::test_engine_builds_and_matches_the_onnx_on_a_tensorrt_host`` runs the real library
where it is installed.
"""

from __future__ import annotations

import enum
import types

import onnx

from evit_deploy.export.trt.onnx_layers import value_types


def fake_tensorrt(version: str) -> types.ModuleType:
    """A minimal stand-in for the ``tensorrt`` module: the ONNX "parser" turns every node into one layer (plus a
    suffixed helper layer for each Pad, as the real parser adds), the builder records what it was asked.
    It checks that the build code calls what it means to call; it says nothing about TensorRT itself."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    dt = enum.Enum("DataType", "FLOAT HALF BF16 INT32 INT64 BOOL INT8 UINT8")
    trt.DataType, trt.float32, trt.float16, trt.bfloat16 = dt, dt.FLOAT, dt.HALF, dt.BF16
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
    trt.BuilderFlag = enum.Enum("BuilderFlag", "FP16 INT8 OBEY_PRECISION_CONSTRAINTS TF32 GPU_FALLBACK")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.DeviceType = types.SimpleNamespace(DLA="dla", GPU="gpu")

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3)

        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger
    types_of = {1: dt.FLOAT, 10: dt.HALF, 7: dt.INT64, 6: dt.INT32, 9: dt.BOOL}

    class Tensor(types.SimpleNamespace):
        pass

    class Layer:
        def __init__(self, name, inputs, outputs):  # noqa: ANN001
            self.name, self.inputs, self.outputs, self.output_types = name, inputs, outputs, {}
            self.num_inputs, self.num_outputs, self.precision = len(inputs), len(outputs), None

        def get_input(self, i):  # noqa: ANN001
            return self.inputs[i]

        def get_output(self, i):  # noqa: ANN001
            return self.outputs[i]

        def set_output_type(self, i, dtype):  # noqa: ANN001
            self.output_types[i] = dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.layers, self.inputs = flags, [], []
            self.num_layers = self.num_inputs = 0

        def get_layer(self, i):  # noqa: ANN001
            return self.layers[i]

        def get_input(self, i):  # noqa: ANN001
            return self.inputs[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):  # noqa: ANN001
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            graph = onnx.load(path).graph
            kinds = value_types(path)
            tensor = {name: Tensor(name=name, dtype=types_of.get(kind, dt.FLOAT)) for name, kind in kinds.items()}
            net = self.network
            net.inputs = [tensor[i.name] for i in graph.input]
            for node in graph.node:
                if node.op_type == "Constant":
                    continue
                outs = [tensor[o] for o in node.output]
                if node.op_type == "Pad":  # a helper layer first, with an unnamed output
                    helper = Tensor(name=f"(Unnamed Layer* {len(net.layers)})", dtype=tensor[node.input[0]].dtype)
                    net.layers.append(Layer(node.name + "_1", [tensor[node.input[0]]], [helper]))
                    net.layers.append(Layer(node.name, [helper], outs))
                else:
                    net.layers.append(Layer(node.name, [tensor[i] for i in node.input if i in tensor], outs))
            net.num_layers, net.num_inputs = len(net.layers), len(net.inputs)
            return True

    class Config:
        def __init__(self) -> None:
            self.flags, self.profiles, self.pools = {trt.BuilderFlag.TF32}, [], {}
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool, size):  # noqa: ANN001
            self.pools[pool] = size

        def set_flag(self, flag):  # noqa: ANN001
            self.flags.add(flag)

        def clear_flag(self, flag):  # noqa: ANN001
            self.flags.discard(flag)

        def add_optimization_profile(self, profile):  # noqa: ANN001
            self.profiles.append(profile)

        def create_timing_cache(self, blob: bytes):  # noqa: ANN001
            return types.SimpleNamespace(serialize=lambda: b"timing:" + bytes(blob))

        def set_timing_cache(self, cache, ignore_mismatch):  # noqa: ANN001
            self.cache = cache
            return True

        def get_timing_cache(self):  # noqa: ANN001
            return self.cache

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):  # noqa: ANN001
            self.shapes[name] = (list(lo), list(opt), list(hi))

    class Builder:
        num_DLA_cores = 2

        def __init__(self, logger):  # noqa: ANN001
            trt.last = self

        def create_network(self, flags: int) -> Network:
            self.network = Network(flags)
            return self.network

        def create_builder_config(self) -> Config:
            self.config = Config()
            return self.config

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network, config):  # noqa: ANN001
            return b"ENGINE"

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt

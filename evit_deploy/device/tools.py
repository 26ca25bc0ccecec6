"""The device tools a bundle drives (LiteRT ``benchmark_model``, ``onnxruntime_perf_test``, ``trtexec``), as a
registry keyed by (device, artifact format): each declares its command lines, the result files they write and
its README section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import ArtifactEntry, Manifest
from ..errors import EvitError
from .settings import DeviceSettings
from .steps import Step

EXPORT_DIR = "export"  # the export's files, copied into the bundle


@dataclass
class BundleContext:
    """What a tool needs to write its part of a bundle (``folder``: the bundle being written)."""

    folder: Path
    device: str
    manifest: Manifest
    artifact: ArtifactEntry
    settings: DeviceSettings
    golden: list[dict[str, Any]]
    io: dict[str, dict[str, Any]]  # every input/output name -> {shape, dtype (stored), quantization}
    bundle_id: str
    facts: dict[str, Any] = field(default_factory=dict)  # what the tool adds to bundle.json ("tool" section)

    @property
    def artifact_path(self) -> str:
        return f"{EXPORT_DIR}/{self.artifact.path}"

    @property
    def device_dir(self) -> str:
        return f"{self.settings.device_dir}/{self.bundle_id}"

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.artifact.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.artifact.outputs]


class DeviceTool:
    """One device tool. ``outputs``: how the device returns a golden sample's outputs (``raw``: one binary file
    of the stored output tensors in order; ``trtexec-json``: trtexec ``--exportOutput``; ``none``)."""

    name = ""
    device = ""
    format = ""
    outputs = "none"
    timing_log = ""
    description = ""
    variable = ""  # run.sh variable with the host path of the tool binary to push (phones)

    def prepare(self, ctx: BundleContext) -> None:
        """Write tool-specific files into the bundle and record facts in ``ctx.facts``."""

    def steps(self, ctx: BundleContext) -> list[Step]:
        raise NotImplementedError

    def header(self, ctx: BundleContext) -> list[str]:
        return []

    def setup(self, ctx: BundleContext) -> list[str]:
        return []

    def readme(self, ctx: BundleContext) -> str:
        raise NotImplementedError

    def output_file(self, stem: str) -> str | None:
        """Where (under results/) the device output of a golden sample lands, or None."""
        return None


TOOLS: dict[tuple[str, str], DeviceTool] = {}


def register_tool(cls: type[DeviceTool]) -> type[DeviceTool]:
    TOOLS[(cls.device, cls.format)] = cls()
    return cls


def tool_for(device: str, fmt: str) -> DeviceTool:
    if (device, fmt) not in TOOLS:
        raise EvitError(f"no {device} tool runs {fmt} artifacts")
    return TOOLS[(device, fmt)]


def shape_text(shape: list[int], sep: str) -> str:
    return sep.join(str(d) for d in shape)

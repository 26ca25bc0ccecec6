"""The exporter interface: one exporter per artifact format, registered by format name, each declaring what it
can do (:class:`Capabilities`) so that a request is checked once, before any work (Ultralytics' export-formats
table is the idea: a table of facts, not a chain of ifs inside each exporter)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...artifacts import FORMATS, ArtifactEntry
from ...files import sha256_file  # noqa: F401  (re-exported for exporters)
from ...tasks import ExportSpec, ExportUnit
from ..calibration import CalibrationSet, calibration_set
from ..profiles import ExportProfile
from ..steps import StepReporter, silent_step
from ..subjects import ExportSubject

Artifact = ArtifactEntry  # what an exporter returns is the manifest entry it records


@dataclass(frozen=True)
class Capabilities:
    """What an exporter accepts. ``consumes``: the format of an earlier artifact of the same role it is made
    from (listed before it in the profile's formats). ``image_graphs_only``: it converts image graphs (one image
    in) only; any other graph is exported by ``fallback`` instead (a routing rule, e.g. TFLite leaves the SAM prompt
    decoder to ONNX)."""

    precisions: tuple[str, ...]
    batch: tuple[str, ...] = ("static", "dynamic")
    spatial: tuple[str, ...] = ("static",)  # "dynamic": symbolic height and width
    layouts: tuple[str, ...] = ("NCHW",)
    consumes: str | None = None
    image_graphs_only: bool = False
    fallback: str | None = None


@dataclass
class Int8Options:
    """What an int8 export does beyond quantizing everything it can: a per-layer sensitivity report, and the
    accuracy-aware fallback to a bound (``max_drop`` points; measured by ``accuracy_drop`` on a dataset when given,
    else as lost agreement with the float model on the calibration images)."""

    sensitivity: bool = False
    max_drop: float | None = None
    accuracy_drop: Callable[[Path], float] | None = None  # candidate ONNX of the "model" role → points lost


@dataclass
class ExportContext:
    workdir: Path
    subject: ExportSubject  # what is exported: its name, task and pre-processing (calibration images)
    profile: ExportProfile
    precision: str
    spec: ExportSpec
    artifacts: list[Artifact] = field(default_factory=list)
    step: StepReporter = silent_step
    calib: Path | None = None  # calibration images (full-integer quantization); None = bundled sample photos
    skipped: list[str] = field(default_factory=list)  # steps not run on this host, with the reason
    int8: Int8Options = field(default_factory=Int8Options)
    quantization: dict[str, Any] = field(default_factory=dict)  # per role: how int8 was made (export.json)
    auto_precision: bool = False  # the precision was chosen by --precision auto (a runtime may choose again)
    _calibration: CalibrationSet | None = field(default=None, init=False, repr=False)

    @property
    def model_name(self) -> str:
        return self.subject.name

    @property
    def opset(self) -> int:
        """The ONNX opset written: the profile's, or the subject's minimum when that is higher."""
        needs = self.subject.onnx
        return max(self.profile.onnx.opset, needs.min_opset if needs else 0)

    @property
    def onnx_exporter(self) -> str:
        """The torch.onnx exporter used: the subject's need, else the profile's."""
        needs = self.subject.onnx
        return needs.exporter if needs and needs.exporter else self.profile.onnx.exporter

    def onnx_notes(self) -> list[str]:
        """The note of an ONNX graph not written as the profile says (the subject's operators need more)."""
        onnx = self.profile.onnx
        changed = [f"{what} {ours}, not the profile's {theirs}" for what, ours, theirs in (
            ("opset", self.opset, onnx.opset), ("exporter", self.onnx_exporter, onnx.exporter)) if ours != theirs]
        return [f"ONNX {', '.join(changed)}: {self.subject.onnx.why}"] if changed else []

    def unit_precision(self, unit: ExportUnit) -> str:
        """The precision this unit is exported in (graphs marked fp32-only stay fp32)."""
        return self.precision if unit.reduced_precision else "fp32"

    def kept_notes(self, unit: ExportUnit) -> list[str]:
        """The note an artifact of a graph kept in fp32 (not reduced to the export's precision) starts with."""
        precision = self.unit_precision(unit)
        return [] if precision == self.precision else [f"kept {precision}: this graph is not reduced in precision"]

    def calibration(self) -> CalibrationSet:
        """The calibration inputs (``--calib``, else the bundled sample photos), read once per export."""
        if self._calibration is None:
            self._calibration = calibration_set(self.calib, self.subject, self.spec.input_size,
                                                self.profile.quant.min_images)
        return self._calibration

    def file_name(self, role: str, suffix: str) -> str:
        stem = "model" if role == "model" else role
        return f"{stem}{suffix}"

    def previous(self, role: str, fmt: str) -> Artifact | None:
        found = [a for a in self.artifacts if a.role == role and a.format == fmt]
        return found[-1] if found else None


class Exporter(ABC):
    """Turns one :class:`ExportUnit` (a PyTorch graph) into one artifact file inside ``ctx.workdir``."""

    format: str = ""
    capabilities: Capabilities = Capabilities(precisions=("fp32",))

    @classmethod
    def settings_problem(cls, profile: ExportProfile, precision: str) -> str | None:
        """Why this exporter cannot honour ``profile``'s settings at ``precision`` (None: it can); asked before any
        work, beside :class:`Capabilities` and the precision recipes."""
        return None

    @abstractmethod
    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact | None:
        """Write the artifact into ``ctx.workdir``; None when the step cannot run on this host (reason in
        ``ctx.skipped``)."""


EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    if cls.format not in FORMATS:
        raise ValueError(f"exporter format {cls.format!r} is not declared in evit_deploy.artifacts.FORMATS")
    EXPORTERS[cls.format] = cls
    return cls

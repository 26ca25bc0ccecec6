"""The exporter interface: one exporter per artifact format, registered by format name."""

from __future__ import annotations

import contextlib
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...runtime.base import TensorSpec
from ..profiles import ExportProfile
from ..tasks import ExportSpec, ExportUnit

StepReporter = Callable[[str], contextlib.AbstractContextManager]


@contextlib.contextmanager
def silent_step(name: str) -> Iterator[None]:
    yield


@dataclass
class Artifact:
    """One file an export produced (paths are relative to the export folder)."""

    format: str
    role: str
    path: str
    precision: str
    layout: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "role": self.role, "path": self.path, "sha256": self.sha256,
            "precision": self.precision, "layout": self.layout,
            "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
            "notes": self.notes,
        }


@dataclass
class ExportContext:
    workdir: Path
    model_name: str
    profile: ExportProfile
    precision: str
    spec: ExportSpec
    artifacts: list[Artifact] = field(default_factory=list)
    step: StepReporter = silent_step
    calib: Path | None = None  # calibration images (full-integer quantization); None = bundled sample photos
    skipped: list[str] = field(default_factory=list)  # steps not run on this host, with the reason

    def unit_precision(self, unit: ExportUnit) -> str:
        """The precision this unit is exported in (graphs marked fp32-only stay fp32)."""
        return self.precision if unit.reduced_precision else "fp32"

    def file_name(self, role: str, suffix: str) -> str:
        stem = "model" if role == "model" else role
        return f"{stem}{suffix}"

    def previous(self, role: str, fmt: str) -> Artifact | None:
        found = [a for a in self.artifacts if a.role == role and a.format == fmt]
        return found[-1] if found else None


class Exporter(ABC):
    """Turns one :class:`ExportUnit` (a PyTorch graph) into one artifact file inside ``ctx.workdir``."""

    format: str = ""
    precisions: tuple[str, ...] = ()

    @abstractmethod
    def export(self, unit: ExportUnit, ctx: ExportContext) -> Artifact | None:
        """Write the artifact into ``ctx.workdir``; None when the step cannot run on this host (reason in
        ``ctx.skipped``)."""


EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    EXPORTERS[cls.format] = cls
    return cls


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

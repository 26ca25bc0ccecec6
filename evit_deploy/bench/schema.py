"""The report model every measurement writes: ``bench run``/``compare``/``paper-table``/``import``, ``eval``'s speed
rows and the ``latency/`` scripts. A report is typed (rows, machine, settings, references, claims) and versioned
(``"schema"`` in report.json); what only one kind of report has (a comparison's counted params, an import's
correctness checks) goes into named ``sections`` that the renderer draws when present.

report.json files of older versions (no ``schema``) are refused with one line saying how to get a new one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import EvitError
from .stats import Stats

SCHEMA = 2
GENERATOR = "evit-deploy"
KINDS = ("bench", "comparison", "import", "eval", "script", "video", "optimize")
ROW_STATUS = ("ok", "unsettled", "failed")
NATIVE_STATUS = ("measured", "not installed", "failed", "unparsed", "not applicable")
MAX_REPORT_BYTES = 64 << 20


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _from(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Overhead:
    """The harness's own cost per call: our timed call minus the runtime's bare call, measured in the worker."""

    timed_ms: float
    bare_ms: float

    @property
    def ms(self) -> float:
        return self.timed_ms - self.bare_ms

    @property
    def pct(self) -> float:
        return 100 * self.ms / self.timed_ms if self.timed_ms else 0.0


@dataclass
class NativeFigure:
    """The device's own benchmark tool, run on the same file with the same threads, batch and shape."""

    tool: str
    status: str  # one of NATIVE_STATUS
    latency: Stats | None = None  # over the tool's runs: each run's median is one block
    detail: str = ""  # the first error line, or why it does not apply
    command: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # what the tool was told
    ratio: float | None = None  # our median / the tool's
    differs: list[str] = field(default_factory=list)  # what differs between the two, when the ratio is off

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = self.latency.to_dict() if self.latency else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NativeFigure:
        native = _from(cls, data)
        native.latency = Stats.from_dict(data["latency"]) if data.get("latency") else None
        return native


@dataclass
class Row:
    """One backend (PyTorch, an artifact in a runtime, or a device's tool) at one batch size."""

    model: str
    backend: str  # pytorch, onnxruntime, openvino, litert, tensorrt, or the device tool of an imported row
    format: str  # pytorch-eager, pytorch-compile, or the artifact's format
    precision: str
    batch: int
    artifact: str | None = None
    role: str | None = None  # what the row is in its report (a comparison's efficientvit/comparison)
    device: str = ""  # where it ran, in words
    status: str = "ok"  # one of ROW_STATUS
    error: str | None = None  # why a row failed or did not settle
    latency: Stats = field(default_factory=Stats)  # ms per call
    ratio_to_eager: float | None = None  # this row's median / PyTorch eager's (same model, batch and run)
    settings: dict[str, Any] = field(default_factory=dict)  # what the runtime ran with, as it reports it
    overhead: Overhead | None = None
    native: NativeFigure | None = None
    load_s: float | None = None  # load (and compile) time in the worker
    rss_mb: float | None = None  # the worker's resident memory after warm-up
    extra: dict[str, Any] = field(default_factory=dict)  # columns of one kind of report (params_M, table, ...)

    @property
    def throughput_img_s(self) -> float | None:
        ms = self.latency.headline
        return self.batch * 1000.0 / ms if ms else None

    @property
    def is_baseline(self) -> bool:
        return self.format == "pytorch-eager"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = self.latency.to_dict()
        data["throughput_img_s"] = self.throughput_img_s
        data["overhead"] = (asdict(self.overhead) | {"ms": self.overhead.ms, "pct": self.overhead.pct}
                            if self.overhead else None)
        data["native"] = self.native.to_dict() if self.native else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        row = _from(cls, data)
        row.latency = Stats.from_dict(data.get("latency") or {})
        row.overhead = _from(Overhead, data["overhead"]) if data.get("overhead") else None
        row.native = NativeFigure.from_dict(data["native"]) if data.get("native") else None
        return row


@dataclass
class Machine:
    """Where the rows were measured. ``load_average``: at the start and the end of the run."""

    label: str
    cpu: str = ""
    cpu_flags: list[str] = field(default_factory=list)
    cores: int | None = None
    threads: int | None = None
    platform: str = ""
    gpu: str | None = None
    load_start: list[float] | None = None
    load_end: list[float] | None = None
    where: str = "this machine"  # or the device a bundle ran on

    @classmethod
    def here(cls, threads: int | None) -> Machine:
        from ..host import machine_facts

        facts = machine_facts(threads)
        return cls(label=facts["label"], cpu=facts["cpu"], cpu_flags=facts["cpu_flags"],
                   cores=facts["cores"], threads=threads, platform=facts["platform"], gpu=facts.get("gpu"),
                   load_start=facts["load_average"])

    def finish(self) -> None:
        from ..host import load_average

        self.load_end = load_average()


@dataclass
class Reference:
    """A published figure (the paper's, the official README's, a vendor's) shown beside the rows; never measured."""

    model: str
    device: str
    device_name: str
    engine: str
    precision: str
    batch: int | None
    metric: str  # latency_ms or throughput_img_s
    value: float
    source: str
    data_transfer: str = ""


@dataclass
class Claim:
    """A headline ratio of the paper beside the ratio of our measured medians for the same pair."""

    baseline: str
    ours: str
    text: str
    headlines: list[dict[str, Any]] = field(default_factory=list)  # the paper's words and where
    paper: list[dict[str, Any]] = field(default_factory=list)  # the paper's figures per device
    measured: list[dict[str, Any]] = field(default_factory=list)  # our medians per backend
    speedup: float | None = None  # the measured ratio on the deployment artifact's backend
    speedup_backend: dict[str, Any] | None = None


@dataclass
class Report:
    kind: str  # one of KINDS
    title: str
    machine: Machine
    rows: list[Row] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # how it was measured (a settings dataclass, as dict)
    versions: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    task: str | None = None
    target: str | None = None
    export: str | None = None
    input_size: list[int] | None = None
    measured: str = "whole model"  # what the timed calls compute (SAM: the image encoder)
    references: list[Reference] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was not measured, one line each
    notes: list[str] = field(default_factory=list)  # how to read the report
    columns: dict[str, str] = field(default_factory=dict)  # extra row columns shown: key in Row.extra -> label
    sections: dict[str, Any] = field(default_factory=dict)  # kind-specific payloads (see render.SECTIONS)
    created: str = field(default_factory=now)
    schema: int = SCHEMA
    generator: str = GENERATOR

    def row(self, model: str | None = None, format: str | None = None, artifact: str | None = None,  # noqa: A002
            batch: int | None = None) -> Row:
        """The first row matching every given field."""
        for r in self.rows:
            if ((model is None or r.model == model) and (format is None or r.format == format)
                    and (artifact is None or r.artifact == artifact) and (batch is None or r.batch == batch)):
                return r
        raise KeyError(f"no row {model=} {format=} {artifact=} {batch=}")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["machine"] = asdict(self.machine)
        data["rows"] = [r.to_dict() for r in self.rows]
        data["references"] = [asdict(r) for r in self.references]
        data["claims"] = [asdict(c) for c in self.claims]
        return {"schema": SCHEMA, "generator": GENERATOR, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "report") -> Report:
        check_schema(data, source)
        report = _from(cls, data)
        report.machine = _from(Machine, data["machine"])
        report.rows = [Row.from_dict(r) for r in data.get("rows", [])]
        report.references = [_from(Reference, r) for r in data.get("references", [])]
        report.claims = [_from(Claim, c) for c in data.get("claims", [])]
        return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def is_ours(data: Any) -> bool:
    """Whether a parsed report.json was written by evit-deploy (this schema, or an older one without a version)."""
    if not isinstance(data, dict):
        return False
    if data.get("generator") == GENERATOR:
        return True
    return {"results", "machine", "model"} <= set(data)  # schema 1 (no version): still ours, may be replaced


def check_schema(data: Any, source: str) -> None:
    if not isinstance(data, dict) or not is_ours(data):
        raise EvitError(f"{source} is not a report written by evit-deploy")
    version = data.get("schema")
    if version is None:
        raise EvitError(f"{source} was written by an older evit-deploy (report without a schema version); measure "
                        "again to get a report this version reads")
    if type(version) is not int or version > SCHEMA or version < SCHEMA:
        raise EvitError(f"{source} has report schema {version!r}; this evit-deploy reads schema {SCHEMA}")
    for key in ("kind", "title", "machine"):
        if key not in data:
            raise EvitError(f"{source} is not a complete report: '{key}' is missing")


def read_report(path: str | Path) -> Report:
    """A report.json (or a report folder holding one), checked and typed."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise EvitError(f"{path} is larger than {MAX_REPORT_BYTES >> 20} MiB: not a report")
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EvitError(f"no report at {path}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise EvitError(f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
    return Report.from_dict(data, str(path))

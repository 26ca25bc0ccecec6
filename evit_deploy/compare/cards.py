"""The paper's comparison tables and the competitor zoo, read from ``models/competitors/*.yaml`` (no torch).

``tables.yaml`` holds each table (dataset, input size, device columns, EfficientViT rows by zoo name) and its
headline claims; every other file holds competitor cards: a kebab-case name, a task, a builder (package +
recipe) or the reason none exists, and one paper row per table the competitor appears in (the paper's params,
MACs, accuracy and per-device figures, and the claims it is part of).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .._paths import data_dir
from ..errors import EvitError, UnknownModelError
from ..export import OnnxNeeds
from ..export.profiles import ONNX_EXPORTERS
from ..processing import Preprocess

METRICS = ("latency_ms", "throughput_img_s")
SOURCES = ("paper", "poster", "not-in-paper")  # where a row's figures come from
NO_BUILDER = "none"
# What each builder of evit_deploy.compare.builders imports (checked without importing, e.g. for listings).
BUILDER_PACKAGES = {"transformers-segformer": ("transformers",), "transformers-image": ("transformers",),
                    "segment-anything": ("segment_anything",), "timm": ("timm",), "fastervit": ("timm", "fastervit"),
                    "written": (), "written-sam": ()}


# Where the timm-only competitors can run (builders' error and the claims' reason say it).
TORCHVISION_NOTE = (
    "timm imports torchvision, which must be built for the installed torch: PyPI's torchvision fails to import beside "
    "the CPU torch 2.13.0 ('operator torchvision::nms does not exist'); run them in the second environment that "
    "`make compare-timm-env` makes (torch 2.14.1 + torchvision 0.29.1 + [compare-timm])"
)
NOTES = {"timm": TORCHVISION_NOTE, "fastervit": TORCHVISION_NOTE}  # builder -> what its one-line error adds


def competitors_dir() -> Path:
    return data_dir("models") / "competitors"


@dataclass(frozen=True)
class Column:
    """A device column of a paper table: ``metric`` (latency_ms or throughput_img_s) at ``batch`` (None: not stated)."""

    device: str  # key of latency/published.yaml's devices (jetson-nano, jetson-agx-orin, a100)
    device_name: str
    metric: str
    batch: int | None
    engine: str
    precision: str
    scope: str = "whole model"

    def settings(self) -> str:
        """``TensorRT fp16 bs1`` (the words a claim is printed with)."""
        return f"{self.engine} {self.precision} bs{self.batch if self.batch is not None else '?'}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PaperRow:
    """One model's row in one paper table (an EfficientViT zoo model or a competitor)."""

    model: str
    table: str
    paper_name: str
    input_size: tuple[int, int]
    params_M: float | None = None
    macs_G: float | None = None
    accuracy: float | None = None
    figures: dict[str, float] = field(default_factory=dict)  # column (device) -> value
    source: str = "paper"
    claims: tuple[str, ...] = ()
    count_note: str = ""  # why a counted/paper mismatch over 5% is not a wrong build

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_size"] = list(self.input_size)
        out["claims"] = list(self.claims)
        return out


@dataclass(frozen=True)
class Claim:
    """A headline ratio of the paper: ``ours`` (EfficientViT) against ``baseline`` on one device column."""

    id: str
    table: str
    text: str
    where: str
    baseline: str
    ours: str
    column: str
    ratio: float
    pair: str


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    task: str
    dataset: str
    num_classes: int | None
    input_size: tuple[int, int]
    accuracy_key: str
    accuracy_label: str
    columns: dict[str, Column]
    figure_column: str
    preprocess: Preprocess
    note: str
    efficientvit: dict[str, PaperRow]
    claims: dict[str, Claim]


@dataclass(frozen=True)
class InputRule:
    """The input sizes a competitor can take: sides that are multiples of ``multiple``, or only ``fixed`` (H, W);
    ``why`` says what imposes it."""

    multiple: int = 1
    fixed: tuple[int, int] | None = None
    why: str = ""

    def check(self, name: str, size: tuple[int, int]) -> None:
        """Raise a one-line error naming the constraint when ``size`` (H, W) cannot be taken."""
        h, w = size
        if self.fixed and (h, w) != self.fixed:
            raise EvitError(f"{name} takes only {self.fixed[0]}x{self.fixed[1]} inputs ({self.why}); got {h}x{w}")
        if h % self.multiple or w % self.multiple:
            raise EvitError(f"{name} takes inputs whose sides are multiples of {self.multiple} ({self.why}); "
                            f"got {h}x{w}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str) -> InputRule:
        data = data or {}
        _keys(data, {"multiple", "fixed", "why"}, f"{where}, input")
        fixed = data.get("fixed")
        return cls(int(data.get("multiple", 1)), (int(fixed[0]), int(fixed[1])) if fixed else None,
                   " ".join(str(data.get("why", "")).split()))


@dataclass(frozen=True)
class RandomWeights:
    """How a competitor's random weights are made numerically usable. A deep network at initialisation can be
    chaotic: a rounding difference grows layer by layer until fp32 disagrees with fp64 itself, and no export can
    match it. ``batchnorm: noise`` sets every BatchNorm's statistics from one pass over noise (as training sets them
    from data), after setting every BatchNorm's scale to ``batchnorm_weight`` (small scales keep each residual
    branch a small correction, as in trained networks); ``why`` says what was seen."""

    batchnorm_from_noise: bool = False
    batchnorm_weight: float | None = None
    why: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str) -> RandomWeights:
        data = data or {}
        where = f"{where}, random_weights"
        _keys(data, {"batchnorm", "batchnorm_weight", "why"}, where)
        if data.get("batchnorm", "init") not in ("init", "noise"):
            raise EvitError(f"{where}: batchnorm is 'init' (as built) or 'noise'; got {data['batchnorm']!r}")
        noise = data.get("batchnorm") == "noise"
        weight = data.get("batchnorm_weight")
        if weight is not None and (not noise or not isinstance(weight, int | float) or weight <= 0):
            raise EvitError(f"{where}: batchnorm_weight is a positive number, with batchnorm: noise")
        if noise and not data.get("why"):
            raise EvitError(f"{where}: say 'why' the BatchNorm statistics come from noise")
        return cls(noise, None if weight is None else float(weight), " ".join(str(data.get("why", "")).split()))


@dataclass(frozen=True)
class CompetitorCard:
    """A competitor of the paper: how to build it (``builder`` package + ``recipe``) or why it cannot be."""

    name: str
    task: str
    builder: str | None
    recipe: dict[str, Any]
    rows: dict[str, PaperRow]  # table name -> row
    unavailable: str = ""
    source: str = ""
    input_rule: InputRule = InputRule()
    random_weights: RandomWeights = RandomWeights()
    onnx: OnnxNeeds | None = None  # what its operators need from the ONNX export

    @property
    def measurable(self) -> bool:
        return self.builder is not None

    def aliases(self) -> list[str]:
        """``segformer-b1-cityscapes``: the name pinned to one of its tables."""
        return [f"{self.name}-{table}" for table in self.rows]


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EvitError(f"competitor data {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise EvitError(f"competitor data {path}: expected a mapping at the top level")
    return doc


def _keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise EvitError(f"{where}: unknown keys {unknown}; known: {', '.join(sorted(allowed))}")


_ROW_KEYS = {"paper_name", "input_size", "params_M", "macs_G", "accuracy", "figures", "source", "claims", "count_note"}


def _row(model: str, table: str, columns: dict[str, Column], size: list[int], data: dict[str, Any], where: str
         ) -> PaperRow:
    """A paper row of ``table`` (its device ``columns``; ``size`` the table's input size unless the row says)."""
    _keys(data, _ROW_KEYS, where)
    unknown = sorted(set(data.get("figures") or {}) - set(columns))
    if unknown:
        raise EvitError(f"{where}: figures for unknown columns {unknown}; the table has {', '.join(columns)}")
    source = data.get("source", "paper")
    if source not in SOURCES:
        raise EvitError(f"{where}: source '{source}' is not one of {', '.join(SOURCES)}")
    h, w = data.get("input_size") or size
    return PaperRow(model=model, table=table, paper_name=data.get("paper_name", model), input_size=(int(h), int(w)),
                    params_M=data.get("params_M"), macs_G=data.get("macs_G"), accuracy=data.get("accuracy"),
                    figures={k: float(v) for k, v in (data.get("figures") or {}).items()}, source=source,
                    claims=tuple(data.get("claims") or ()), count_note=" ".join(data.get("count_note", "").split()))


_TABLE_KEYS = {"title", "task", "dataset", "num_classes", "input_size", "accuracy", "columns", "figure_column",
               "preprocess", "note", "efficientvit", "claims"}
_CLAIM_KEYS = {"text", "where", "baseline", "ours", "column", "ratio", "pair"}


@cache
def paper_tables() -> dict[str, PaperTable]:
    """The paper's comparison tables by name (cityscapes, ade20k, imagenet, sam)."""
    from ..bench.reference import published

    path = competitors_dir() / "tables.yaml"
    doc = _load(path)
    devices = published()["devices"]
    tables = {}
    for name, t in doc["tables"].items():
        where = f"{path.name}, table {name}"
        _keys(t, _TABLE_KEYS, where)
        columns = {}
        for device, c in t["columns"].items():
            if device not in devices or c.get("metric") not in METRICS:
                raise EvitError(f"{where}: column {device} needs a device of latency/published.yaml "
                                f"({', '.join(devices)}) and a metric ({', '.join(METRICS)})")
            columns[device] = Column(device, devices[device], c["metric"], c.get("batch"), doc["engine"],
                                     doc["precision"], c.get("scope", "whole model"))
        claims = {}
        for cid, c in (t.get("claims") or {}).items():
            _keys(c, _CLAIM_KEYS, f"{where}, claim {cid}")
            if c["column"] not in columns:
                raise EvitError(f"{where}, claim {cid}: column {c['column']} is not one of the table's")
            claims[cid] = Claim(cid, name, c["text"], c["where"], c["baseline"], c["ours"], c["column"],
                                float(c["ratio"]), c.get("pair", ""))
        tables[name] = PaperTable(
            name=name, title=t["title"], task=t["task"], dataset=t["dataset"], num_classes=t.get("num_classes"),
            input_size=(int(t["input_size"][0]), int(t["input_size"][1])), accuracy_key=t["accuracy"]["key"],
            accuracy_label=t["accuracy"]["label"], columns=columns, figure_column=t["figure_column"],
            preprocess=Preprocess.from_dict(t.get("preprocess") or {}, where), note=" ".join(t.get("note", "").split()),
            efficientvit={m: _row(m, name, columns, t["input_size"], r, f"{where}, {m}")
                          for m, r in t["efficientvit"].items()},
            claims=claims,
        )
    return tables


_CARD_KEYS = {"task", "builder", "recipe", "rows", "unavailable", "input", "random_weights", "onnx"}


def _onnx_needs(data: dict[str, Any] | None, where: str) -> OnnxNeeds | None:
    if not data:
        return None
    _keys(data, {"min_opset", "exporter", "why"}, f"{where}, onnx")
    if not isinstance(data.get("min_opset"), int) or not data.get("why"):
        raise EvitError(f"{where}, onnx: min_opset (an integer) and 'why' are both needed")
    if data.get("exporter") not in (None, *ONNX_EXPORTERS):
        raise EvitError(f"{where}, onnx: exporter is one of {', '.join(ONNX_EXPORTERS)}; got {data['exporter']!r}")
    return OnnxNeeds(data["min_opset"], data.get("exporter"), " ".join(str(data["why"]).split()))


@cache
def competitors() -> dict[str, CompetitorCard]:
    """Every competitor card by name, in file then declaration order."""
    tables = paper_tables()
    cards: dict[str, CompetitorCard] = {}
    for path in sorted(competitors_dir().glob("*.yaml")):
        if path.name == "tables.yaml":
            continue
        doc = _load(path)
        _keys(doc, {"builder", "task", "recipe", "input", "models"}, str(path.name))
        for name, m in doc["models"].items():
            where = f"{path.name}, {name}"
            _keys(m, _CARD_KEYS, where)
            if name in cards:
                raise EvitError(f"competitor {name} is declared twice ({cards[name].source}, {path.name})")
            builder = m.get("builder", doc.get("builder"))
            task = m.get("task", doc.get("task"))
            unknown = sorted(set(m.get("rows") or {}) - set(tables))
            if unknown or not m.get("rows"):
                raise EvitError(f"{where}: rows must name paper tables ({', '.join(tables)}); got {unknown or 'none'}")
            rows = {t: _row(name, t, tables[t].columns, list(tables[t].input_size), r, f"{where}, {t}")
                    for t, r in m["rows"].items()}
            if any(tables[t].task != task for t in rows):
                raise EvitError(f"{where}: task {task} differs from the task of its tables")
            measurable = builder not in (None, NO_BUILDER)
            if not measurable and not m.get("unavailable"):
                raise EvitError(f"{where}: a competitor without a builder needs an 'unavailable' reason")
            cards[name] = CompetitorCard(name, task, builder if measurable else None,
                                         {**(doc.get("recipe") or {}), **(m.get("recipe") or {})}, rows,
                                         " ".join(str(m.get("unavailable", "")).split()), path.name,
                                         InputRule.from_dict(m.get("input", doc.get("input")), where),
                                         RandomWeights.from_dict(m.get("random_weights"), where),
                                         _onnx_needs(m.get("onnx"), where))
    return cards


def all_claims() -> dict[str, Claim]:
    return {cid: c for t in paper_tables().values() for cid, c in t.claims.items()}


@dataclass(frozen=True)
class UnbuiltClaim:
    """A headline claim of the paper outside the comparison tables, with why it is not measured."""

    id: str
    text: str
    where: str
    reason: str


@cache
def unbuilt_claims() -> dict[str, UnbuiltClaim]:
    """The paper's claims that nothing here can measure (tables.yaml ``not_built``), by id."""
    doc = _load(competitors_dir() / "tables.yaml")
    out = {}
    for cid, c in (doc.get("not_built") or {}).items():
        _keys(c, {"text", "where", "reason"}, f"tables.yaml, not_built {cid}")
        out[cid] = UnbuiltClaim(cid, c["text"], c["where"], " ".join(c["reason"].split()))
    return out


def get_table(name: str) -> PaperTable:
    tables = paper_tables()
    if name not in tables:
        raise EvitError(f"unknown paper table '{name}'; choose one of {', '.join(tables)}")
    return tables[name]


def table_for(task: str, dataset: str) -> PaperTable | None:
    """The paper table of a zoo model's task and dataset (None: the paper compares none)."""
    return next((t for t in paper_tables().values() if t.task == task and t.dataset == dataset), None)


def resolve_competitor(name: str) -> tuple[CompetitorCard, str | None]:
    """(card, table) of a competitor name or of an alias pinned to a table (``segformer-b1-cityscapes``).
    Unknown names raise with the closest matches."""
    cards = competitors()
    if name in cards:
        return cards[name], None
    for card in cards.values():
        for table in card.rows:
            if name == f"{card.name}-{table}":
                return card, table
    known = list(cards) + [a for c in cards.values() for a in c.aliases()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `evit-deploy bench comparisons`"
    raise UnknownModelError(f"unknown competitor '{name}'{hint}")


def competitor_row(name: str) -> PaperRow | None:
    """The paper row of an export's model name (``<competitor>-<table>``), or None."""
    try:
        card, table = resolve_competitor(name)
    except EvitError:
        return None
    return card.rows.get(table) if table else None

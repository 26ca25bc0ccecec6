"""Search spaces: what ``optimize`` tries for each target, as declared data (``export_profiles/search/<target>.yaml``,
next to the target's profile): the exports to make (a precision, profile overrides, whether int8 keeps sensitive
layers float until ``--max-drop``), the batch shapes, the thread counts and the runtime options of the backend.

A space expands into :class:`ExportVariant` (one export each) and :class:`Candidate` (an export run with given
threads and runtime options). What this host cannot run (bf16 without native support, a runtime not installed) is
left out and named.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._paths import data_dir
from ..errors import EvitError
from ..host import cores
from ..runtime.cpu import precision_problem

HOST_TARGETS = ("cpu-ort", "cpu-openvino", "mobile-cpu-tflite", "mobile-cpu-ort")  # the CPU targets timed here
NEEDS = {"bf16": lambda: precision_problem("bf16")}  # host capability → why it is missing (None: present)


@dataclass(frozen=True)
class ExportVariant:
    """One export to make: ``target`` with ``precision``, profile ``overrides``, a static or dynamic batch axis, and
    (``fallback``) int8's accuracy-aware fallback to ``--max-drop``."""

    target: str
    name: str
    precision: str
    static: bool
    overrides: tuple[tuple[str, Any], ...] = ()  # frozen form of a profile mapping (see profile_text)
    fallback: bool = False
    batch: int = 1  # the batch of a static export

    @property
    def label(self) -> str:
        return f"{self.target} {self.name} {'static' if self.static else 'dynamic'}"

    @property
    def profile_name(self) -> str:
        """The name of the export's profile: the target, then what differs from its default export."""
        return f"{self.target}.{self.name}.{'static' if self.static else 'dynamic'}"

    def profile_text(self) -> str:
        """The YAML profile of this export: the target, extended by the overrides and the batch shape."""
        doc: dict[str, Any] = {"extends": self.target, "name": self.profile_name}
        doc.update(_thaw(self.overrides))
        doc.setdefault("batch", {})["dynamic"] = not self.static
        if self.static:
            doc["batch"].update(size=self.batch, max=self.batch)
        return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class Candidate:
    """An export run with ``threads`` and runtime ``options`` (backend option → value)."""

    variant: ExportVariant
    threads: int
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options)
        return f"{self.variant.label} t{self.threads}" + (f" {opts}" if opts else "")

    @property
    def key(self) -> str:
        return self.label.replace(" ", "|")


@dataclass
class SearchSpace:
    target: str
    exports: list[dict[str, Any]]
    shapes: list[str] = field(default_factory=lambda: ["dynamic"])
    threads: str | list[int] = "all"
    options: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def thread_counts(self) -> list[int]:
        if self.threads == "all":
            return list(range(1, cores() + 1))
        return [t for t in self.threads if 1 <= t <= cores()]

    def variants(self, skipped: list[str], batch: int = 1) -> list[ExportVariant]:
        """The exports this host can make and run (what it cannot is appended to ``skipped``, one line each)."""
        out = []
        for spec in self.exports:
            missing = [f"{need}: {problem}" for need in spec.get("needs", []) if (problem := NEEDS[need]())]
            if missing:
                skipped.append(f"{self.target} {spec['name']}: not here ({'; '.join(missing)})")
                continue
            for shape in self.shapes:
                out.append(ExportVariant(self.target, spec["name"], spec["precision"], shape == "static",
                                         _freeze(spec.get("profile", {})), bool(spec.get("fallback")), batch))
        return out

    def candidates(self, variant: ExportVariant, all_options: bool) -> list[Candidate]:
        """The runs of ``variant``: every thread count, and (``all_options``) every combination of runtime options
        (else the runtime's defaults only)."""
        grid = [()] if not all_options or not self.options else [
            tuple(zip(self.options, values)) for values in itertools.product(*self.options.values())]
        return [Candidate(variant, t, opts) for t in self.thread_counts() for opts in grid]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in sorted(value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                        for v in value):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def spaces_dir() -> Path:
    return data_dir("export_profiles") / "search"


def load_space(target: str) -> SearchSpace:
    """The search space of a shipped target (one line when it has none)."""
    path = spaces_dir() / f"{target}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in spaces_dir().glob("*.yaml"))
        raise EvitError(f"no search space for target '{target}' (optimize searches: {', '.join(known)})")
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EvitError(f"cannot read the search space {path}: {exc}") from None
    space = SearchSpace(doc["target"], doc["exports"], doc.get("shapes", ["dynamic"]), doc.get("threads", "all"),
                        {k: [str(v) for v in vs] for k, vs in (doc.get("options") or {}).items()}, str(path))
    bad = [s for s in space.shapes if s not in ("static", "dynamic")]
    if bad or not space.exports or any("name" not in e or "precision" not in e for e in space.exports):
        raise EvitError(f"{path}: each export needs a name and a precision; shapes are static/dynamic")
    _check_options(space, path)
    return space


def _check_options(space: SearchSpace, path: Path) -> None:
    """Every runtime option of ``space`` is one a backend declares, with values it takes (one line otherwise)."""
    from ..runtime import BACKENDS, ensure_registered

    ensure_registered()
    for key, values in space.options.items():
        owners = [b for b in BACKENDS.values() if key in b.OPTIONS]
        if not owners:
            known = sorted({k for b in BACKENDS.values() for k in b.OPTIONS})
            raise EvitError(f"{path}: no backend has the runtime option '{key}' (options: {', '.join(known)})")
        for value in values:
            try:
                owners[0].check_options({key: value})
            except EvitError as exc:
                raise EvitError(f"{path}: {exc}") from None

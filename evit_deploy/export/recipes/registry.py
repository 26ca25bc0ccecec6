"""The precision-recipe registry: how each reduced precision is made for each artifact format.

A recipe is registered for a precision and the formats it serves (torch-tensorrt's registered lowering passes are
the model), with a declared **stage**:

- ``module``: on the PyTorch module, before the format is written (fp16 with fp32 islands);
- ``artifact``: on the written artifact, after the format is written (ONNX Runtime / NNCF / ai-edge-quantizer int8,
  TFLite fp16 weights);
- ``runtime``: nothing is rewritten: the format's fp32 artifact is computed in this precision by its runtime, as the
  profile's settings pin it (OpenVINO bf16).

An exporter writes its format and asks :func:`module_stage` and :func:`artifact_stage` for the rest; it never
branches on the precision. A profile chooses among recipes of one (precision, format) with ``quant.scheme``
(int8), and :func:`recipe_problems` refuses, before any work, what no recipe can honour (a scheme or a calibration
method the format's int8 does not have).

Formats made from another format's artifact (``ort``, ``trt-engine``, ``trt-bundle``: ``Capabilities.consumes``)
have no recipes of their own: they carry the precision of the artifact they are made from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # type hints only: the registry is imported by preflight, before torch
    from torch import nn

    from ...tasks import ExportUnit
    from ..exporters.base import ExportContext
    from ..profiles import ExportProfile

Stage = Literal["module", "artifact", "runtime"]
STAGES: tuple[Stage, ...] = ("module", "artifact", "runtime")


@dataclass(frozen=True)
class Written:
    """What a format writer wrote, handed to ``artifact`` recipes (which replace ``path`` in place).

    ``onnx``: the fp32 ONNX the artifact was made from, when there is one (its node names find the float islands).
    """

    path: Path
    onnx: Path | None = None


ModuleRecipe = Callable[["nn.Module", "ExportUnit", "ExportContext"], tuple["nn.Module", list[str]]]
ArtifactRecipe = Callable[[Written, "ExportUnit", "ExportContext"], list[str]]


@dataclass(frozen=True)
class Recipe:
    """One way of making ``precision`` for ``formats``.

    ``apply``: a :data:`ModuleRecipe` (stage ``module``: returns a new module, never edits its input, and notes),
    an :data:`ArtifactRecipe` (stage ``artifact``: rewrites the written file, returns notes) or None (stage
    ``runtime``). ``step``: the progress line (``{role}`` is the graph's role). ``scheme``: the ``quant.scheme`` it
    makes (None: it does not depend on one). ``calibrations``: the ``quant.calibration`` methods it implements
    (empty: it is not calibrated, and ``--calib`` is unused). ``requires``: optional modules it imports.
    """

    name: str
    precision: str
    formats: tuple[str, ...]
    stage: Stage
    doc: str
    apply: Callable[..., Any] | None = None
    step: str = ""
    scheme: str | None = None
    calibrations: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    @property
    def calibrated(self) -> bool:
        return bool(self.calibrations)


RECIPES: dict[tuple[str, str], list[Recipe]] = {}  # (precision, format) → the recipes registered for it, in order


def register_recipe(name: str, precision: str, formats: tuple[str, ...], stage: Stage, *, step: str = "",
                    scheme: str | None = None, calibrations: tuple[str, ...] = (), requires: tuple[str, ...] = ()
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the recipe ``name`` (its docstring's first line is the recipe's doc)."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        add_recipe(Recipe(name, precision, formats, stage, doc, fn, step, scheme, calibrations, requires))
        return fn

    return decorator


def add_recipe(recipe: Recipe) -> Recipe:
    if recipe.stage not in STAGES:
        raise ValueError(f"recipe {recipe.name}: unknown stage {recipe.stage!r}")
    if (recipe.apply is None) != (recipe.stage == "runtime"):
        needs = "needs" if recipe.apply is None else "has no"
        raise ValueError(f"recipe {recipe.name}: a {recipe.stage} recipe {needs} apply function")
    for fmt in recipe.formats:
        registered = RECIPES.setdefault((recipe.precision, fmt), [])
        if any(r.name == recipe.name for r in registered):
            raise ValueError(f"recipe {recipe.name} is registered twice for ({recipe.precision}, {fmt})")
        registered.append(recipe)
    return recipe


def registered(precision: str, fmt: str) -> list[Recipe]:
    """Every recipe registered for (``precision``, ``fmt``), whatever the profile chooses."""
    return list(RECIPES.get((precision, fmt), []))


def recipes_for(precision: str, fmt: str, profile: ExportProfile, stage: Stage | None = None) -> list[Recipe]:
    """The recipes ``profile`` applies to make ``precision`` for ``fmt`` (of ``stage``, when given), in order."""
    return [r for r in registered(precision, fmt)
            if r.scheme in (None, profile.quant.scheme) and (stage is None or r.stage == stage)]


def recipe_problems(profile: ExportProfile, precision: str, formats: list[str]) -> list[str]:
    """What keeps ``profile`` from making ``precision`` for ``formats`` with its recipes (empty: nothing): a
    ``quant.scheme`` no recipe of a format makes, a ``quant.calibration`` method its recipe does not implement."""
    problems = []
    for fmt in formats:
        available = registered(precision, fmt)
        chosen = recipes_for(precision, fmt, profile)
        schemes = sorted({r.scheme for r in available if r.scheme})
        if available and not chosen and schemes:
            problems.append(f"format '{fmt}' makes {precision} with quant.scheme {' or '.join(schemes)}, not "
                            f"'{profile.quant.scheme}' (set quant.scheme in the profile)")
        for recipe in chosen:
            if recipe.calibrated and profile.quant.calibration not in recipe.calibrations:
                problems.append(f"format '{fmt}' calibrates {precision} ({recipe.name}) with "
                                f"{' or '.join(recipe.calibrations)}, not '{profile.quant.calibration}' "
                                "(set quant.calibration in the profile)")
    return problems


def calibrates(profile: ExportProfile, precision: str, formats: list[str]) -> bool:
    """Whether any recipe of ``precision`` for ``formats`` reads calibration images (``--calib``)."""
    return any(r.calibrated for fmt in formats for r in recipes_for(precision, fmt, profile))


def module_stage(fmt: str, unit: ExportUnit, ctx: ExportContext) -> tuple[nn.Module, list[str]]:
    """The unit's module with the ``module`` recipes of its precision for ``fmt`` applied (the unit's own module
    when there are none), and their notes."""
    module, notes = unit.module, []
    for recipe in recipes_for(ctx.unit_precision(unit), fmt, ctx.profile, "module"):
        with ctx.step(recipe.step.format(role=unit.role)):
            module, more = recipe.apply(module, unit, ctx)
        notes += more
    return module, notes


def artifact_stage(fmt: str, written: Written, unit: ExportUnit, ctx: ExportContext) -> list[str]:
    """Apply the ``artifact`` recipes of the unit's precision for ``fmt`` to ``written``; returns their notes."""
    notes = []
    for recipe in recipes_for(ctx.unit_precision(unit), fmt, ctx.profile, "artifact"):
        with ctx.step(recipe.step.format(role=unit.role)):
            notes += recipe.apply(written, unit, ctx)
    return notes

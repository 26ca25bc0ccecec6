"""Precision recipes, registered by (precision, format) with a declared stage (:mod:`.registry`). Importing this
package registers the built-in ones: :mod:`.fp16`, :mod:`.bf16`, :mod:`.int8`."""

from . import bf16 as _bf16  # noqa: F401  (registers bf16-compute)
from . import fp16 as _fp16  # noqa: F401  (registers fp16-islands, fp16-weights)
from . import int8 as _int8  # noqa: F401  (registers the int8-dynamic and calibrated int8 recipes)
from .registry import (
    RECIPES,
    STAGES,
    Recipe,
    Stage,
    Written,
    artifact_stage,
    calibrates,
    module_stage,
    recipe_problems,
    recipes_for,
    register_recipe,
    registered,
)

__all__ = ["RECIPES", "STAGES", "Recipe", "Stage", "Written", "artifact_stage", "calibrates", "module_stage",
           "recipe_problems", "recipes_for", "register_recipe", "registered"]

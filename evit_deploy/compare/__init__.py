"""The paper's hardware comparisons on the user's device: competitor models measured beside EfficientViT.

- ``cards``: the paper's comparison tables, headline claims and the competitor zoo (``models/competitors/*.yaml``);
- ``builders``: one builder per route (transformers-segformer, transformers-image, segment-anything, timm,
  fastervit; ``written``/``written-sam`` for the models written here in ``nets``), packages imported lazily (extras
  ``[compare]`` and ``[compare-timm]``);
- ``subjects``: a competitor as an export subject (a generic single-input image graph), so it goes through the
  same profile, exporters, validation gate and ``export.json`` as EfficientViT;
- ``counts``: params and MACs counted beside the paper's; ``plan``: what a run measures and which pairs it
  reports; ``run``: export, validate, measure interleaved, assemble the report; ``claims``: the paper's ratios
  beside the measured ones, and which headline claims can be run here (or why not); ``report``: report.md /
  report.html with the paper's figure redrawn; ``nets``: the competitors written here from their papers.
"""

from __future__ import annotations

from .._lazy import lazy_names
from .cards import all_claims, competitors, get_table, paper_tables, resolve_competitor

_RUN = dict.fromkeys(("CompareSettings", "run_comparison"), "evit_deploy.compare.run")
_PLAN = dict.fromkeys(("plan_compare", "plan_table"), "evit_deploy.compare.plan")

__all__ = ["all_claims", "competitors", "get_table", "paper_tables", "resolve_competitor", *_RUN, *_PLAN]

__getattr__ = lazy_names("evit_deploy.compare", _RUN | _PLAN, globals())

"""Tasks: one :class:`TaskSpec` per task (``cls``, ``seg``, ``sam``), the only place a task is defined.

Each task is one module here (:mod:`.cls`, :mod:`.seg`, :mod:`.sam`) that declares its graphs and implements its
builder, export units, pre/post-processing (the Predictor's handler) and evaluation protocol, and registers its
spec once; every stage asks :func:`task_spec`. The framework: :mod:`.spec` (the spec and the registry), :mod:`.graph`
(graphs, agreement metrics; numpy only), :mod:`.units` (export units and sample inputs; torch).

Importing this package imports no torch; the task modules are imported on the first lookup (so the bases they
build on, :mod:`evit_deploy.predict.handlers` and :mod:`evit_deploy.eval.protocols`, import :mod:`.graph` itself,
not this package). ``models/README.md`` shows how to add a task.
"""

from __future__ import annotations

from functools import cache

from .._lazy import lazy_names
from ..errors import EvitError
from .graph import Agreement, Graph, argmax_agreement, min_cosine
from .spec import TaskSpec, register, registered

_UNITS = dict.fromkeys(("ExportSpec", "ExportUnit", "graph_unit", "image_unit"), "evit_deploy.tasks.units")

__all__ = ["Agreement", "Graph", "TaskSpec", "all_specs", "all_roles", "argmax_agreement", "min_cosine",
           "prompted_titles", "register", "task_names", "task_spec", *_UNITS]

__getattr__ = lazy_names("evit_deploy.tasks", _UNITS, globals())


BUILTIN = ("cls", "seg", "sam")  # the order listings keep, whichever module another import registered first


@cache
def _builtin() -> None:
    """Import the built-in task modules once; each registers its spec."""
    # isort: off
    from . import cls  # noqa: F401
    from . import seg  # noqa: F401
    from . import sam  # noqa: F401
    # isort: on


def all_specs() -> dict[str, TaskSpec]:
    """Every task's spec by name: the built-in ones, then any registered with :func:`register`."""
    _builtin()
    specs = registered()
    return {name: specs[name] for name in (*BUILTIN, *specs) if name in specs}


def task_names() -> tuple[str, ...]:
    return tuple(all_specs())


def all_roles() -> tuple[str, ...]:
    """Every graph role of every task, each once (``model``, ``encoder``, ``decoder``)."""
    return tuple(dict.fromkeys(g.role for spec in all_specs().values() for g in spec.graphs))


def prompted_titles() -> str:
    """The tasks that take prompts on an encoded image, in words, for messages (``Segment Anything``)."""
    return " or ".join(spec.title for spec in all_specs().values() if spec.prompted)


def task_spec(name: str) -> TaskSpec:
    """The spec of task ``name``; a one-line error naming the known tasks for any other."""
    specs = all_specs()
    if name not in specs:
        raise EvitError(f"unknown task '{name}'; choose one of {', '.join(specs)}")
    return specs[name]

"""The commands of a device run, as data: rendered into a bundle's ``run.sh`` and executed by ``bench --adb``, so
both run exactly the same command lines (from the bundle folder, results into ``results/``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

RESULTS = "results"  # the folder run.sh writes, relative to the bundle


@dataclass(frozen=True)
class Var:
    """A value given when the commands run: an environment variable of run.sh (``$NAME``), an argument of
    ``bench --adb``."""

    name: str


Arg = str | Var


@dataclass
class Step:
    """One host command. ``argv[0]`` is a tool name (``adb``, ``trtexec``, ``bash``, ``sha256sum``); ``log``: a
    file under ``results/`` that receives its stdout and stderr; ``optional``: a failure is reported and the run
    goes on (a golden run on a benchmark_model too old for ``--output_filepath``); ``when``: run only when this
    variable is set; ``unless_exists``: skip when this file (relative to the bundle) exists."""

    argv: list[Arg]
    purpose: str
    log: str | None = None
    optional: bool = False
    when: str | None = None
    unless_exists: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """As stored in bundle.json (a variable is ``{"var": NAME}``); ``bench --adb`` runs these."""
        return {"argv": [{"var": a.name} if isinstance(a, Var) else a for a in self.argv], "purpose": self.purpose,
                "log": self.log, "optional": self.optional, "when": self.when, "unless_exists": self.unless_exists,
                "tags": list(self.tags), "bash": command_line(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        argv = [Var(a["var"]) if isinstance(a, dict) else str(a) for a in data["argv"]]
        return cls(argv, data["purpose"], data.get("log"), bool(data.get("optional")), data.get("when"),
                   data.get("unless_exists"), tuple(data.get("tags", ())))


TOOL_VARIABLES = {"adb": "ADB", "trtexec": "TRTEXEC"}  # run.sh finds these tools through a variable


def _render_arg(arg: Arg) -> str:
    if isinstance(arg, Var):
        return f'"${arg.name}"'
    return shlex.quote(arg)


def command_line(step: Step) -> str:
    """The bash command line of one step (with its redirection and failure handling)."""
    tool = step.argv[0]
    head = f'"${TOOL_VARIABLES[tool]}"' if tool in TOOL_VARIABLES else shlex.quote(str(tool))
    line = " ".join([head, *(_render_arg(a) for a in step.argv[1:])])
    if step.log:
        line += f" > {shlex.quote(f'{RESULTS}/{step.log}')} 2>&1"
    if step.optional:
        where = f" (see {RESULTS}/{step.log})" if step.log else ""
        line += f' || echo "warning: {step.purpose} failed{where}" >&2'
    return line


def render_step(step: Step) -> list[str]:
    """The bash lines of one step: a comment, the command, and its condition."""
    line = command_line(step)
    conditions = []
    if step.when:
        conditions.append(f'[ -n "${{{step.when}:-}}" ]')
    if step.unless_exists:
        conditions.append(f"[ ! -e {shlex.quote(step.unless_exists)} ]")
    if conditions:
        return [f"# {step.purpose}", f"if {' && '.join(conditions)}; then", "  " + line, "fi"]
    return [f"# {step.purpose}", line]


def render_script(header: list[str], setup: list[str], steps: list[Step]) -> str:
    """``run.sh``: the header comments, ``set -euo pipefail``, the setup lines, then every step."""
    lines = ["#!/usr/bin/env bash", *(f"# {h}" if h else "#" for h in header), "set -euo pipefail",
             'cd "$(dirname "$0")"', *setup,
             f'if [ -e {RESULTS} ]; then mv {RESULTS} "{RESULTS}.old-$(date +%Y%m%d-%H%M%S)"; fi  # keep old results',
             f"mkdir -p {RESULTS}/golden", "echo \"$BUNDLE_ID\" > results/BUNDLE_ID", ""]
    for step in steps:
        lines += [*render_step(step), ""]
    lines.append(f'echo "done: import the results with: evit-deploy bench import {RESULTS} --bundle . '
                 '--device-name \\"<your device>\\""')
    return "\n".join(lines) + "\n"

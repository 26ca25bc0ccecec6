"""Protobuf text (the format of Triton's ``config.pbtxt``) from nested dicts; nothing here needs tritonclient."""

from __future__ import annotations

import json
from typing import Any


class Sym(str):
    """An enum value in protobuf text (written without quotes)."""


def to_pbtxt(value: dict[str, Any], indent: int = 0) -> str:
    """A nested dict as protobuf text: dicts → ``key { }``, lists of dicts → ``key [ { }, ... ]``,
    lists of scalars → ``key: [ a, b ]``; ``Sym`` values are enum names, other strings are quoted."""
    pad = "  " * indent
    lines = []
    for key, val in value.items():
        if isinstance(val, dict):
            lines += [f"{pad}{key} {{", to_pbtxt(val, indent + 1), f"{pad}}}"]
        elif isinstance(val, list) and val and isinstance(val[0], dict):
            blocks = [f"{pad}  {{\n{to_pbtxt(v, indent + 2)}\n{pad}  }}" for v in val]
            lines += [f"{pad}{key} [", ",\n".join(blocks), f"{pad}]"]
        elif isinstance(val, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in val)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(val)}")
    return "\n".join(line for line in lines if line)


def _scalar(v: Any) -> str:
    if isinstance(v, Sym):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))

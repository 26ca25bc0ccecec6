"""An independent reader of Triton's ``config.pbtxt`` (protobuf text), for checking what the repository writer
wrote without using its own code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

NP_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64, "TYPE_INT32": np.int32,
            "TYPE_UINT8": np.uint8, "TYPE_BOOL": np.bool_, "TYPE_STRING": np.object_}


# -- a small protobuf-text parser (independent of the writer) ------------------------------------------------
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([A-Za-z_][\w.]*)|(-?\d+(?:\.\d+)?))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, f"bad protobuf text at {text[pos:pos + 30]!r}"
        pos = m.end()
        if not m.group(1):
            out.append(m.group(0).strip())
    return out


def parse_pbtxt(text: str) -> dict[str, list]:
    """Protobuf text → {field: [values]} (messages are dicts, repeated fields accumulate)."""
    toks = _tokens(text)
    pos = 0

    def value() -> object:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok.startswith('"'):
            return json.loads(tok)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if re.fullmatch(r"-?\d+\.\d+", tok):
            return float(tok)
        assert re.fullmatch(r"[A-Za-z_]\w*", tok), tok
        return {"true": True, "false": False}.get(tok, tok)

    def values_list() -> list:
        nonlocal pos
        items = []
        while toks[pos] != "]":
            items.append(value())
            if toks[pos] == ",":
                pos += 1
        pos += 1
        return items

    def message(end: str | None) -> dict[str, list]:
        nonlocal pos
        fields: dict[str, list] = {}
        while pos < len(toks) and toks[pos] != end:
            name = toks[pos]
            assert re.fullmatch(r"[A-Za-z_]\w*", name), f"expected a field name, got {name!r}"
            pos += 1
            if toks[pos] == ":":
                pos += 1
            if toks[pos] == "[":
                pos += 1
                fields.setdefault(name, []).extend(values_list())
            else:
                fields.setdefault(name, []).append(value())
        if end is not None:
            assert toks[pos] == end, "unbalanced braces"
            pos += 1
        return fields

    parsed = message(None)
    assert pos == len(toks)
    return parsed


def one(config: dict, key: str) -> object:
    assert len(config[key]) == 1, key
    return config[key][0]


def read_config(folder: Path) -> dict:
    return parse_pbtxt((folder / "config.pbtxt").read_text())

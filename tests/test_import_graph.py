"""The package's static import graph keeps the shape the README draws: no cycles between modules, imports only
down the layers (the runtime under export, never the other way), and no private name (``_x``) imported from
another package. Reads the source with ``ast`` (nothing is imported), so it runs in a second."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import evit_deploy

ROOT = Path(evit_deploy.__file__).resolve().parent
PKG = ROOT.name

# The README's layer drawing ("What is here"), bottom first: a module may import its own layer's modules and
# those of any layer below it, never one above. Keys are a name under evit_deploy (a subpackage, a top-level module,
# or a module inside a subpackage where it sits lower than its package); a module takes the layer of the longest
# key it lies in; "" is evit_deploy/__init__.py. The task specs (layer 2) hold each task's handler and eval
# protocol, so the vocabulary those are written in (the handler and protocol bases, results, prompts, post-
# processing, dataset samples) sits with them, below the runtime, although its packages are applications.
TASK_VOCABULARY = ("predict.handlers", "predict.prompts", "predict.results", "predict.postprocess",
                   "predict.engine_base", "predict.palettes", "predict.overlay", "eval.protocols", "eval.datasets")
LAYERS: dict[str, int] = {
    **dict.fromkeys(("", "_lazy", "_paths", "errors", "files", "host", "images", "limits", "optional", "ports",
                     "metrics", "samples", "external_data"), 0),
    **dict.fromkeys(("processing", "checkpoint", "nn", "signing"), 1),
    **dict.fromkeys(("tasks", *TASK_VOCABULARY, "zoo", "contract", "artifacts", "signed_exports"), 2),
    "runtime": 3,
    "export": 4,
    **dict.fromkeys(("bench", "compare", "device", "eval", "predict", "video", "serve", "cluster", "triton"), 5),
    "optimize": 6,
    **dict.fromkeys(("cli", "__main__"), 7),
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the longest module name the import statement resolves to)
    names: tuple[str, ...]  # names taken from it (from-imports)
    line: int

    def __str__(self) -> str:
        what = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.source}:{self.line} imports {self.target}{what}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _owner(name: str) -> str | None:
    """The longest module of the package that ``name`` (a dotted path) names or lies in."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def edges() -> tuple[Edge, ...]:
    found = []
    for module, path in modules().items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [(a.name, ()) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import sub` names a module; `from mod import name` a name of that module
                submodules = [a.name for a in node.names if f"{base}.{a.name}" in modules()]
                targets = [(f"{base}.{s}", ()) for s in submodules]
                names = tuple(a.name for a in node.names if a.name not in submodules)
                if names or not submodules:
                    targets.append((base, names))
            else:
                continue
            for target, names in targets:
                owner = _owner(target) if target.split(".")[0] == PKG else None
                if owner is not None and owner != module:
                    found.append(Edge(module, owner, names, node.lineno))
    return tuple(found)


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer_key(module: str) -> str:
    """The longest key of LAYERS that ``module`` lies in (its top name when none is longer)."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    return _top(module)


def _package_of(module: str) -> str:
    return module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]


def cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan). Imports of ``evit_deploy`` itself (its
    ``__version__`` and lazy re-exports) are the ground floor and left out, as the shared tool does."""
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for e in edges():
        if e.target != PKG:
            graph[e.source].add(e.target)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


# ------------------------------------------------------------------------------------------------- the rules


def test_the_graph_is_read():
    """The reader finds what is there (guards the checks below against passing on an empty graph)."""
    assert len(modules()) > 100 and len(edges()) > 500
    pairs = {(e.source, e.target) for e in edges()}
    assert ("evit_deploy.export.exporters.tflite", "evit_deploy.runtime.litert_backend") in pairs  # export → runtime
    assert ("evit_deploy.zoo.cards", "evit_deploy.processing") in pairs


def test_no_import_cycles():
    assert cycles() == []


def test_the_runtime_never_imports_the_export_package():
    up = [str(e) for e in edges() if _top(e.source) == "runtime" and _top(e.target) == "export"]
    assert up == []


def test_every_package_has_a_layer_and_imports_only_down():
    unplaced = sorted({_top(m) for m in modules()} - set(LAYERS))
    assert unplaced == [], f"place these in LAYERS here and in the README's drawing: {unplaced}"
    upward = [f"{e} (layer {LAYERS[_layer_key(e.source)]} -> {LAYERS[_layer_key(e.target)]})" for e in edges()
              if LAYERS[_layer_key(e.target)] > LAYERS[_layer_key(e.source)]]
    assert upward == []


def test_no_private_name_is_imported_from_another_package():
    """``_x`` (a function, class, constant or module) is private to the package that defines it and those under
    it; another package must use a public name."""
    leaks = []
    for e in edges():
        home = _package_of(e.target)
        private = [n for n in e.names if n.startswith("_") and not n.startswith("__")]
        module_private = any(part.startswith("_") and not part.startswith("__")
                             for part in e.target.removeprefix(f"{PKG}.").split("."))
        if module_private:  # a private module: private to the package holding it
            home = e.target.rpartition(".")[0]
        inside = e.source == home or e.source.startswith(f"{home}.")
        if (private or module_private) and not inside:
            leaks.append(str(e))
    assert leaks == []


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements a module runs when it is imported (inside ``if``/``try`` too, not in functions or classes;
    ``if TYPE_CHECKING:`` blocks left out)."""
    out = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        out.append(node)
        if isinstance(node, (ast.If, ast.Try)):
            nested = node.body + node.orelse + getattr(node, "finalbody", [])
            nested += [s for h in getattr(node, "handlers", []) for s in h.body]
            out += _top_level(nested)
    return out


def optional_imports_at_import_time(source: str) -> list[str]:
    """Module-level imports of an optional library (a module of ``optional.EXTRAS``) that no earlier module-level
    ``require("<that library>", ...)`` call checked."""
    from evit_deploy.optional import EXTRAS

    checked, unchecked = set(), []
    for node in _top_level(ast.parse(source).body):
        call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("require") and call.args:
            checked.add(str(ast.literal_eval(call.args[0])).split(".")[0])
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        unchecked += [f"{n} (line {node.lineno})" for n in names if n.split(".")[0] in EXTRAS
                      and n.split(".")[0] not in checked]
    return unchecked


def test_optional_libraries_are_never_imported_unchecked_at_import_time():
    """optional.py's promise: importing a module of the package never fails with a bare ImportError for a missing
    extra; a module that needs one at its top calls require for it first."""
    found = {m: bad for m, path in modules().items() if (bad := optional_imports_at_import_time(path.read_text()))}
    assert found == {}
    assert optional_imports_at_import_time("import onnx\n") == ["onnx (line 1)"]
    assert optional_imports_at_import_time("from x import require\nrequire('fastapi', 'p')\nimport fastapi.x\n") == []
    assert optional_imports_at_import_time("def f():\n    import onnx\n") == []


def test_a_missing_extra_is_one_line_when_the_server_module_is_imported():
    """serve/app.py imported without FastAPI (hidden here): the [serve] extra is named, no bare ImportError."""
    import subprocess

    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from evit_deploy.errors import MissingDependency\n"
            "try:\n    import evit_deploy.serve.app\nexcept MissingDependency as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "[serve] extra" in out.stdout, out.stderr[-500:]


def test_the_rules_catch_what_they_are_for(monkeypatch):
    """Each rule on a made-up graph: a cycle, an upward import (runtime → export) and a private name taken from a
    sibling package are reported; a private name used inside its own package is not."""
    made_up = (
        Edge("evit_deploy.runtime.base", "evit_deploy.export.pipeline", ("run_export",), 1),
        Edge("evit_deploy.export.pipeline", "evit_deploy.runtime.base", ("Backend",), 2),
        Edge("evit_deploy.export.exporters.tflite", "evit_deploy.export.quantize.onnx_unit", ("_helper",), 3),
        Edge("evit_deploy.export.quantize.search", "evit_deploy.export.quantize.onnx_unit", ("_helper",), 4),
    )
    monkeypatch.setattr(sys.modules[__name__], "edges", lambda: made_up)
    assert cycles() == [["evit_deploy.export.pipeline", "evit_deploy.runtime.base"]]
    with pytest.raises(AssertionError, match="runtime.base:1 imports evit_deploy.export.pipeline"):
        test_the_runtime_never_imports_the_export_package()
    with pytest.raises(AssertionError, match=r"layer 3 -> 4"):
        test_every_package_has_a_layer_and_imports_only_down()
    with pytest.raises(AssertionError, match="exporters.tflite:3 imports") as caught:
        test_no_private_name_is_imported_from_another_package()
    assert "quantize.search" not in str(caught.value)

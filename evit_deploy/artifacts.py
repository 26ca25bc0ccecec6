"""The export folder's manifest, ``export.json``: its one owner (schema, reading, checking, writing).

An export folder holds artifacts (ONNX, ORT, TFLite, TensorRT engines, ...) and ``export.json``, which says what
they are. Everything that opens an export folder — the runtime, the Predictor, ``serve``, ``bench``, ``triton``,
``validate``, ``build-engine`` — reads it here, with :func:`read_manifest`:

- the schema is typed (:class:`Manifest`, :class:`ArtifactEntry`, :class:`TensorSpec`) and versioned
  (``"schema": 1``); unknown formats, tasks, roles or precisions, wrong types and sizes beyond the limits are
  one-line errors;
- artifact paths are relative, normalised and resolve inside the folder (symlinks resolved); nothing outside
  it is ever read;
- ``export.json`` itself is confined like the artifacts (a symlink out of the folder is refused), bounded in
  size and nesting, and checked against the model card it names (:mod:`evit_deploy.contract`: task, graphs,
  I/O names and shapes, pre-processing);
- each artifact's sha256 is checked when the folder is opened (``verify=False`` skips it), so a swapped or
  corrupt file is never run; a format made of two files (OpenVINO IR: ``model.xml`` + its weights ``model.bin``)
  records the second as a *companion* of the first, with its own sha256, checked with it; every file an
  artifact refers to (an ONNX graph's external data) must be one of its declared companions;
- with a signature required (``require_signature=``, or the ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment
  variable), the whole folder is verified against its ``export.sig`` (:mod:`evit_deploy.signing`) before
  anything in it is read, and the ``export.json`` read must be the one that was signed;
- :func:`choose_artifact` is the one rule for which artifact of a role runs.

Only the export pipeline and ``build-engine`` write manifests, through :func:`write_manifest` (atomic).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from .errors import EvitError, ManifestError
from .files import STAGING_MARKER, Owner, atomic_write, file_kind, sha256_file
from .limits import LIMITS
from .signing import SIGNATURE, TrustSpec, resolve_trust, signed_folder
from .tasks import all_roles, task_names, task_spec

SCHEMA = 1
MANIFEST = "export.json"
Precision = Literal["fp32", "fp16", "bf16", "int8-dynamic", "int8"]
Layout = Literal["NCHW", "NHWC"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
LAYOUTS: tuple[str, ...] = get_args(Layout)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FormatInfo:
    """An artifact format: its file suffixes, whether a runtime backend runs it, whether it needs a GPU, and the
    suffixes of the companion files it cannot run without (same stem, beside it: an OpenVINO ``.xml`` needs its
    ``.bin``). ``optional_companions``: suffixes added to the whole file name of companions some artifacts have (an
    ONNX graph over 2 GB keeps its weights in ``model.onnx.data``); hash-checked like the others when listed.
    ``references``: ``module:function`` listing the files an artifact file refers to by name (``path`` → the
    names as written in it, relative to its folder); each must be a declared companion."""

    suffixes: tuple[str, ...]
    runnable: bool = True
    gpu: bool = False
    companions: tuple[str, ...] = ()
    optional_companions: tuple[str, ...] = ()
    references: str = ""

    def companion_paths(self, path: str) -> list[str]:
        """The companion files of the artifact at ``path`` (relative POSIX paths)."""
        stem = path[: -len(PurePosixPath(path).suffix)] if PurePosixPath(path).suffix else path
        return [stem + suffix for suffix in self.companions]

    def optional_companion_paths(self, path: str) -> list[str]:
        return [path + suffix for suffix in self.optional_companions]


FORMATS: dict[str, FormatInfo] = {
    "onnx": FormatInfo((".onnx",), optional_companions=(".data",),  # .data: external weights of a graph > 2 GB
                       references="evit_deploy.external_data:external_data_locations"),
    "ort": FormatInfo((".ort",)),
    "tflite": FormatInfo((".tflite",)),
    "trt-engine": FormatInfo((".engine", ".plan"), gpu=True),
    "torch-compiled": FormatInfo((".pt2",), gpu=True),
    "openvino": FormatInfo((".xml",), companions=(".bin",)),  # OpenVINO IR: the graph; the weights are the .bin
    "trt-bundle": FormatInfo((".sh",), runnable=False),  # build_engine.sh of a Jetson bundle: built on the device
}


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of an artifact. Symbolic dimensions are strings (e.g. ``"batch"``)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    def matches(self, other: TensorSpec) -> bool:
        """Same name and rank, and equal sizes wherever both are fixed (symbolic dimensions match anything)."""
        return self.name == other.name and len(self.shape) == len(other.shape) and all(
            a == b for a, b in zip(self.shape, other.shape) if isinstance(a, int) and isinstance(b, int))


@dataclass
class ArtifactEntry:
    """One file an export produced (``path`` is relative to the export folder)."""

    format: str
    role: str
    path: str
    precision: str
    layout: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: str = ""
    notes: list[str] = field(default_factory=list)
    companions: dict[str, str] = field(default_factory=dict)  # files the artifact needs beside it → sha256
    # Settings every consumer must pass when it loads the artifact, because the runtime does not take them from the
    # file (OpenVINO ignores the precision an IR carries): {setting: value}, in the runtime's own names.
    load_settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.companions and self.format in FORMATS:
            self.companions = dict.fromkeys(FORMATS[self.format].companion_paths(self.path), "")

    @property
    def runnable(self) -> bool:
        return FORMATS[self.format].runnable

    @property
    def paths(self) -> list[str]:
        """The artifact's file and its companions."""
        return [self.path, *self.companions]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": self.format, "role": self.role, "path": self.path, "sha256": self.sha256,
            "precision": self.precision, "layout": self.layout,
            "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
            "notes": self.notes,
        }
        if self.companions:
            out["companions"] = dict(self.companions)
        if self.load_settings:
            out["load_settings"] = dict(self.load_settings)
        return out


@dataclass
class BatchInfo:
    """The exported batch: ``size`` of the example input; ``dynamic`` batch axis up to ``max``."""

    size: int = 1
    dynamic: bool = False
    max: int = 1

    @property
    def largest(self) -> int:
        return self.max if self.dynamic else self.size


@dataclass
class RuntimeInfo:
    """How the artifacts are meant to run: CPU threads (0 = the runtime's default), execution providers, and runtime
    options per backend (``{"onnxruntime": {"spinning": "off"}}``; checked by the backend when it loads, applied by
    every load: ``optimize`` records what its search chose here)."""

    threads: int = 0
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    options: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Manifest:
    """``export.json``. ``files`` lists every file the export wrote (besides ``export.json``), so that a later
    export may replace the folder knowing it deletes nothing else; ``profile`` is the resolved export profile."""

    model: str
    task: str
    target: str
    input_size: tuple[int, int]
    precision: str
    batch: BatchInfo
    runtime: RuntimeInfo
    artifacts: list[ArtifactEntry]
    files: list[str] = field(default_factory=list)
    created: str = ""
    weights: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    transforms: dict[str, str] = field(default_factory=dict)  # transform name → what it changed
    preprocessing: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)  # int8: per role, scheme, calibration, fallback
    search: dict[str, Any] = field(default_factory=dict)  # the `optimize` search that chose this export and settings
    schema: int = SCHEMA

    @property
    def roles(self) -> list[str]:
        return list(dict.fromkeys(a.role for a in self.artifacts))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["input_size"] = list(self.input_size)
        out["batch"], out["runtime"] = dataclasses.asdict(self.batch), dataclasses.asdict(self.runtime)
        if not self.runtime.options:  # written only when chosen (optimize): other exports keep the earlier format
            del out["runtime"]["options"]
        out["artifacts"] = [a.to_dict() for a in self.artifacts]
        if not self.search:  # written only by optimize: other exports keep the earlier format
            del out["search"]
        return {"schema": self.schema, **{k: v for k, v in out.items() if k != "schema"}}


# ---------------------------------------------------------------------------------------------- checking


class _Reader:
    """Typed access to a JSON object, with errors that name the manifest and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.path}: {where} {problem}")

    def get(self, data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "",
            default: Any = dataclasses.MISSING) -> Any:
        name = f"{where}.{key}" if where else key
        if key not in data:
            if default is dataclasses.MISSING:
                raise self.fail(f"'{name}'", "is missing")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        bad_bool = isinstance(value, bool) and bool not in kinds
        if not isinstance(value, kinds) or bad_bool:
            wanted = " or ".join(k.__name__ for k in kinds).replace("dict", "object").replace("list", "list")
            raise self.fail(f"'{name}'", f"must be {wanted}, not {type(value).__name__}")
        return value

    def choice(self, data: dict[str, Any], key: str, choices: tuple[str, ...], where: str = "") -> str:
        value = self.get(data, key, str, where)
        if value not in choices:
            name = f"{where}.{key}" if where else key
            raise self.fail(f"'{name}'", f"is '{value}'; known: {', '.join(choices)}")
        return value

    def tensors(self, data: dict[str, Any], key: str, where: str) -> list[TensorSpec]:
        specs = []
        for i, item in enumerate(self.get(data, key, list, where)):
            at = f"{where}.{key}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(f"'{at}'", "must be an object")
            shape = self.get(item, "shape", list, at)
            if len(shape) > 8 or not all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in shape):
                raise self.fail(f"'{at}.shape'", "must be a list of at most 8 integers or names")
            specs.append(TensorSpec(self.get(item, "name", str, at), tuple(shape), self.get(item, "dtype", str, at)))
        return specs


def check_name(name: str, what: str) -> str:
    """A name used as a file or folder name: letters, digits, ``.``, ``_``, ``-``; no leading dot, no ``..``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name or len(name) > 128:
        raise EvitError(f"{what} {name!r} is not a safe name (use letters, digits, '.', '_', '-'; "
                        "no leading dot, no '..', at most 128 characters)")
    return name


def relative_path(text: str) -> str:
    """``text`` as a normalised relative POSIX path, or a one-line error (absolute, ``..``, empty parts)."""
    if not text or "\\" in text or "\0" in text:
        raise EvitError(f"artifact path {text!r} is not a relative path inside the export folder")
    path = PurePosixPath(text)
    if path.is_absolute() or any(part in ("..", ".", "") for part in text.split("/")) or str(path) != text:
        raise EvitError(f"artifact path {text!r} is not a normalised relative path inside the export folder "
                        "(no absolute paths, '..' or '.')")
    return text


def confined(folder: Path, relative: str) -> Path:
    """``folder / relative`` after resolving symlinks, refused unless it stays inside ``folder``."""
    root = folder.resolve()
    target = (root / relative_path(relative)).resolve()
    if target != root and root not in target.parents:
        raise EvitError(f"artifact {relative} of {folder} resolves outside the export folder ({target}); refused")
    return target


def _check_size(reader: _Reader, size: list[Any]) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        raise reader.fail("'input_size'", "must be [height, width] integers")
    h, w = size
    problem = LIMITS.input_size_problem(h, w)
    if problem:
        raise reader.fail("'input_size'", problem)
    return h, w


def _artifact(reader: _Reader, data: Any, i: int) -> ArtifactEntry:
    at = f"artifacts[{i}]"
    if not isinstance(data, dict):
        raise reader.fail(f"'{at}'", "must be an object")
    fmt = reader.choice(data, "format", tuple(FORMATS), at)
    path = reader.get(data, "path", str, at)
    try:
        relative_path(path)
    except EvitError as exc:
        raise reader.fail(f"'{at}.path'", f"is refused: {exc}") from None
    if Path(path).suffix not in FORMATS[fmt].suffixes:
        raise reader.fail(f"'{at}.path'", f"({path}) does not have a {fmt} suffix ({', '.join(FORMATS[fmt].suffixes)})")
    sha = reader.get(data, "sha256", str, at, "")
    if sha and not _SHA_RE.fullmatch(sha):
        raise reader.fail(f"'{at}.sha256'", "is not a sha256 hex digest")
    notes = reader.get(data, "notes", list, at, [])
    companions = reader.get(data, "companions", dict, at, {})
    wanted = FORMATS[fmt].companion_paths(path)
    optional = FORMATS[fmt].optional_companion_paths(path)
    if not set(wanted) <= set(companions) <= set(wanted) | set(optional):
        allowed = f"exactly {', '.join(wanted) or 'nothing'}" + (f" (and optionally {' or '.join(optional)})"
                                                                  if optional else "")
        raise reader.fail(f"'{at}.companions'", f"must list {allowed} (the files {path} needs beside it), not "
                          f"{', '.join(companions) or 'nothing'}")
    for name, digest in companions.items():
        if not isinstance(digest, str) or (digest and not _SHA_RE.fullmatch(digest)):
            raise reader.fail(f"'{at}.companions.{name}'", "is not a sha256 hex digest")
    load_settings = reader.get(data, "load_settings", dict, at, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in load_settings.items()):
        raise reader.fail(f"'{at}.load_settings'", "must map setting names to string values")
    return ArtifactEntry(
        format=fmt, role=reader.choice(data, "role", all_roles(), at), path=path,
        precision=reader.choice(data, "precision", PRECISIONS, at),
        layout=reader.choice(data, "layout", LAYOUTS, at), inputs=reader.tensors(data, "inputs", at),
        outputs=reader.tensors(data, "outputs", at), sha256=sha, notes=[str(n) for n in notes],
        companions=dict(companions), load_settings=dict(load_settings),
    )


def _check_unique(reader: _Reader, artifacts: list[ArtifactEntry]) -> None:
    """Refuse a file listed twice (two entries, or an artifact that is also another's companion): which entry a
    reader takes would otherwise decide which sha256 is checked."""
    seen: dict[str, str] = {}
    for i, entry in enumerate(artifacts):
        for relative in entry.paths:
            if relative in (MANIFEST, SIGNATURE):
                raise reader.fail(f"'artifacts[{i}]'", f"lists {relative}, which is not an artifact")
            if relative in seen:
                raise reader.fail(f"'artifacts[{i}]'", f"lists {relative} again (already in {seen[relative]}); "
                                  "each file may be listed once")
            seen[relative] = f"artifacts[{i}]"


def parse_manifest(data: Any, path: Path) -> Manifest:
    """Check the JSON of an ``export.json`` (types, names, limits, artifact paths) into a :class:`Manifest`."""
    r = _Reader(path)
    if not isinstance(data, dict):
        raise r.fail("the top level", "must be a JSON object")
    schema = data.get("schema")
    if schema is None:
        raise ManifestError(f"{path} has no schema version: it was written by evit-deploy 0.1.0 or by something "
                            "else; export the model again")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise r.fail("'schema'", f"must be an integer, not {type(schema).__name__}")
    if schema != SCHEMA:
        raise ManifestError(f"{path} has schema {schema!r}; this evit-deploy reads schema {SCHEMA}")
    model = r.get(data, "model", str)
    try:
        check_name(model, "model name")
    except EvitError as exc:
        raise r.fail("'model'", f"is refused: {exc}") from None
    batch = r.get(data, "batch", dict)
    runtime = r.get(data, "runtime", dict, default={})
    b = BatchInfo(r.get(batch, "size", int, "batch"), r.get(batch, "dynamic", bool, "batch"),
                  r.get(batch, "max", int, "batch", batch.get("size", 1)))
    if not 1 <= b.size <= LIMITS.max_batch or not b.size <= b.max <= LIMITS.max_batch:
        raise r.fail("'batch'", f"must have 1 <= size <= max <= {LIMITS.max_batch}")
    threads = r.get(runtime, "threads", int, "runtime", 0)
    if not 0 <= threads <= 1024:
        raise r.fail("'runtime.threads'", "must be 0..1024")
    providers = r.get(runtime, "providers", list, "runtime", ["CPUExecutionProvider"])
    options = r.get(runtime, "options", dict, "runtime", {})
    if not all(isinstance(k, str) and isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str)
                                                                  for a, b in v.items()) for k, v in options.items()):
        raise r.fail("'runtime.options'", "must map backend names to {option: value} of strings")
    if not all(isinstance(p, str) for p in providers):
        raise r.fail("'runtime.providers'", "must be a list of provider names")
    artifacts = [_artifact(r, a, i) for i, a in enumerate(r.get(data, "artifacts", list))]
    if not artifacts:
        raise r.fail("'artifacts'", "is empty")
    _check_unique(r, artifacts)
    files = r.get(data, "files", list, default=[])
    for f in files:
        if not isinstance(f, str):
            raise r.fail("'files'", "must be a list of paths")
        try:
            relative_path(f)
        except EvitError as exc:
            raise r.fail("'files'", f"is refused: {exc}") from None
    return Manifest(
        model=model, task=r.choice(data, "task", task_names()), target=r.get(data, "target", str),
        input_size=_check_size(r, r.get(data, "input_size", list)), precision=r.get(data, "precision", str),
        batch=b, runtime=RuntimeInfo(threads, providers, options), artifacts=artifacts, files=files,
        created=r.get(data, "created", str, default=""), weights=r.get(data, "weights", dict, default={}),
        profile=r.get(data, "profile", dict, default={}), versions=r.get(data, "versions", dict, default={}),
        transforms=r.get(data, "transforms", dict, default={}),
        preprocessing=r.get(data, "preprocessing", dict, default={}),
        skipped=[str(s) for s in r.get(data, "skipped", list, default=[])],
        validation=r.get(data, "validation", dict, default={}),
        quantization=r.get(data, "quantization", dict, default={}),
        search=r.get(data, "search", dict, default={}),
    )


# ------------------------------------------------------------------------------------------ reading, writing


def is_export_folder(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def read_manifest(folder: str | Path, verify: bool = True, require_signature: TrustSpec = None) -> Manifest:
    """Read and check ``folder/export.json``; with ``verify`` every artifact must exist inside the folder and
    match its recorded sha256 (each file is hashed once, here).

    ``require_signature`` (a public key or CA certificate file; default: the ``EVIT_DEPLOY_REQUIRE_SIGNATURE``
    environment variable): the folder must carry a valid signature by that key over every one of its files,
    verified before anything else is read; the ``export.json`` read here must be the signed one (its artifacts
    are then bound to the signature by their sha256, checked when they are opened).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"not an export folder: {folder} is not a folder")
    trust = resolve_trust(require_signature)
    signed = signed_folder(folder, trust) if trust is not None else None
    path = folder / MANIFEST
    try:
        target = confined(folder, MANIFEST)
    except EvitError:
        raise ManifestError(f"{path} is a symbolic link to {path.resolve()}, outside the export folder; refused"
                            ) from None
    kind = file_kind(target)
    if kind == "missing":
        raise ManifestError(f"{folder} is not an export folder (no {MANIFEST})")
    if kind != "file":
        raise ManifestError(f"{path} is {kind}, not a file; refused")
    raw = _read_bounded(target)
    if signed is not None:
        signed.check_file(MANIFEST, raw)
    try:
        data = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ManifestError(f"{path} is nested too deeply to be a manifest; refused") from None
    manifest = parse_manifest(data, path)
    from .contract import check_contract

    check_contract(manifest, path)
    if verify:
        for entry in manifest.artifacts:
            verify_artifact(folder, entry)
    return manifest


def _read_bounded(path: Path) -> bytes:
    """The bytes of ``path``, refused beyond the manifest size limit (read at most one byte past it)."""
    limit = LIMITS.max_manifest_bytes
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ManifestError(f"{path} is larger than {limit} bytes; a manifest is at most {limit} bytes")
    return raw


def verify_artifact(folder: Path, entry: ArtifactEntry, check_hash: bool = True) -> Path:
    """The confined path of ``entry``, refused when it or one of its companions (an OpenVINO ``.bin``) is missing
    or not a regular file, when the artifact refers to a file that is not one of its declared companions (an
    ONNX graph's external data), or (``check_hash``) when a file differs from its recorded sha256."""
    path = confined(folder, entry.path)
    for relative, digest in [(entry.path, entry.sha256), *entry.companions.items()]:
        what = "artifact" if relative == entry.path else f"the companion of {entry.path}"
        file = confined(folder, relative)
        kind = file_kind(file)
        if kind == "missing":
            raise ManifestError(f"{what} missing: {folder / relative} (listed in {MANIFEST})")
        if kind != "file":
            raise ManifestError(f"{what} {folder / relative} is {kind}, not a file (listed in {MANIFEST}); refused")
        if not check_hash:
            continue
        if not digest:
            raise ManifestError(f"{folder / MANIFEST} records no sha256 for {relative}: its integrity cannot be "
                                "checked; export again")
        if sha256_file(file) != digest:
            raise ManifestError(f"{what} {folder / relative} was swapped, modified or is corrupt (its sha256 differs "
                                f"from {MANIFEST}); refusing to run it; export again")
    check_references(folder, entry)
    return path


def check_references(folder: Path, entry: ArtifactEntry) -> None:
    """Refuse an artifact that refers to a file (by name, inside the artifact) that is not one of its declared,
    hash-checked companions: an undeclared file, an absolute path, ``..``, or anything outside the folder."""
    spec = FORMATS[entry.format].references
    if not spec:
        return
    import importlib

    module, function = spec.split(":")
    listed = getattr(importlib.import_module(module), function)(confined(folder, entry.path))
    base = PurePosixPath(entry.path).parent
    for location in listed:
        try:
            relative = (base / relative_path(location)).as_posix()
            confined(folder, relative)
        except EvitError:
            raise ManifestError(f"{folder / entry.path} refers to the file {location!r}, which is not a relative "
                                "path inside the export folder; refused") from None
        if relative not in entry.companions:
            raise ManifestError(f"{folder / entry.path} refers to the file {relative}, which {MANIFEST} does not "
                                "declare as its companion (so it has no sha256); refused")


def seal(folder: Path, entry: ArtifactEntry) -> None:
    """Record the sha256 of ``entry``'s file and of its companions (the exporter wrote them into ``folder``)."""
    entry.sha256 = sha256_file(folder / entry.path)
    entry.companions = {name: sha256_file(folder / name) for name in entry.companions}


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``folder/export.json`` atomically (checked by the same rules :func:`read_manifest` applies)."""
    data = manifest.to_dict()
    parse_manifest(json.loads(json.dumps(data)), folder / MANIFEST)
    path = folder / MANIFEST
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    return path


def _declared_files(doc: Any, name: str) -> list[str] | None:
    """The files an ``export.json`` says its export wrote (None when it is not a manifest this version reads)."""
    try:
        return parse_manifest(doc, Path(name)).files
    except EvitError:
        return None


# The ownership rule of export folders (evit_deploy.files): export.json lists every file the export wrote; a
# signature added later by `evit-deploy sign` is ours too.
EXPORT = Owner("export folder", MANIFEST, _declared_files, also=(SIGNATURE,))


def written_files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` (relative POSIX paths, sorted), the top-level ``export.json``, its
    signature and the staging marker excluded."""
    return sorted(rel for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                  and (rel := p.relative_to(folder).as_posix()) not in (MANIFEST, SIGNATURE, STAGING_MARKER))


# ------------------------------------------------------------------------------------ choosing an artifact


def default_role(manifest: Manifest) -> str:
    """The graph ``runtime.load`` opens unless told: the task's first (``model``; SAM: ``encoder``)."""
    first = task_spec(manifest.task).graphs[0].role
    return first if first in manifest.roles else manifest.roles[0]


def choose_artifact(manifest: Manifest, role: str | None = None, formats: tuple[str, ...] | None = None
                    ) -> ArtifactEntry:
    """The artifact of ``role`` (default: ``model``, else the first role) that runs.

    With ``formats`` (in order of preference), the first of them the export has; otherwise the last runnable
    one listed, which is the end of the export's chain (e.g. ``.ort`` after the ``.onnx`` it came from).
    """
    wanted = role or default_role(manifest)
    entries = [a for a in manifest.artifacts if a.role == wanted and a.runnable]
    if formats is not None:
        entries = sorted((a for a in entries if a.format in formats), key=lambda a: formats.index(a.format))
        entries = entries[:1]
    if not entries:
        which = f" in format {', '.join(formats)}" if formats else ""
        raise ManifestError(f"the export of {manifest.model} has no runnable '{wanted}' artifact{which} "
                            f"(roles: {', '.join(manifest.roles)})")
    return entries[-1]

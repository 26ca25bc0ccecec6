"""Runtime backends: ``load(path)`` opens an artifact file (or an export folder) for inference.

Backends register by artifact suffix (``.onnx``/``.ort`` → ONNX Runtime, ``.tflite`` → LiteRT, ``.xml`` (+ its
``.bin``) → OpenVINO, ``.engine`` → TensorRT, ``.pt2`` → the packaged PyTorch engine). An export folder is opened
through its manifest (:mod:`evit_deploy.artifacts`): the artifact is confined to the folder, its sha256 is checked
(with its companions'), its inputs must be those the manifest records, and the manifest's runtime settings
(threads, providers) apply.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

from ..artifacts import (
    MANIFEST,
    ArtifactEntry,
    Manifest,
    ManifestError,
    choose_artifact,
    read_manifest,
    verify_artifact,
)
from ..errors import EvitError
from ..signing import TrustSpec, resolve_trust
from .base import BACKENDS, Backend, TensorSpec, register_backend

_BACKEND_MODULES = ("evit_deploy.runtime.onnxruntime_backend", "evit_deploy.runtime.litert_backend",
                    "evit_deploy.runtime.openvino_backend", "evit_deploy.runtime.compiled_backend",
                    "evit_deploy.runtime.tensorrt_backend")


def ensure_registered() -> None:
    """Import the built-in backends (each imports its runtime library lazily)."""
    for module in _BACKEND_MODULES:
        importlib.import_module(module)


def runnable_suffixes() -> set[str]:
    ensure_registered()
    return set(BACKENDS)


def open_file(path: str | Path, threads: int = 0, providers: list[str] | None = None,
              shared_cpu: bool = False, options: Mapping[str, str] | None = None) -> Backend:
    """Open one artifact file with the backend registered for its suffix (no manifest involved). ``options``: the
    backend's runtime options (see :attr:`Backend.OPTIONS`)."""
    ensure_registered()
    path = Path(path)
    if not path.is_file():
        raise EvitError(f"not found: {path}" if not path.exists() else f"not an artifact file: {path}")
    backend = BACKENDS.get(path.suffix)
    if backend is None:
        raise EvitError(f"no runtime backend for '{path.suffix}' files (known: {', '.join(sorted(BACKENDS))})")
    kwargs = {"threads": threads, "shared_cpu": shared_cpu}
    if providers:
        kwargs["providers"] = providers
    if options:
        kwargs["options"] = options
    return backend(path, **kwargs)


def backend_for(path: str | Path) -> type[Backend] | None:
    """The backend class registered for the suffix of ``path``."""
    ensure_registered()
    return BACKENDS.get(Path(path).suffix)


def require_runtime(path: str | Path) -> None:
    """Raise the one-line MissingDependency when the runtime of this artifact file is not installed (without
    loading the file)."""
    from ..optional import require

    ensure_registered()
    backend = BACKENDS.get(Path(path).suffix)
    if backend is not None and backend.requires:
        require(backend.requires, f"running {Path(path).name}")


def open_artifact(folder: str | Path, manifest: Manifest, entry: ArtifactEntry, threads: int | None = None,
                  shared_cpu: bool = False, verify: bool = True, options: Mapping[str, str] | None = None) -> Backend:
    """Open ``entry`` of the export ``folder``: confined path, sha256 checked (unless ``verify=False``), the
    manifest's runtime settings (threads, providers, and the options recorded for this backend, e.g. by
    ``optimize``; ``options`` given here override them), and the artifact's inputs checked against the manifest
    before any run."""
    folder = Path(folder)
    path = verify_artifact(folder, entry, check_hash=verify)
    cls = backend_for(path)
    recorded = manifest.runtime.options.get(cls.name, {}) if cls is not None else {}
    backend = open_file(path, manifest.runtime.threads if threads is None else threads, manifest.runtime.providers,
                        shared_cpu, {**recorded, **(options or {})})
    check_io(backend, entry, folder)
    return backend


def check_io(backend: Backend, entry: ArtifactEntry, folder: Path) -> None:
    """Refuse an artifact whose inputs or outputs are not those ``export.json`` records (a file from another
    export, or a manifest describing another model)."""
    for kind, recorded, actual_specs in (("input", entry.inputs, backend.inputs),
                                         ("output", entry.outputs, backend.outputs)):
        found = {s.name: s for s in actual_specs}
        for spec in recorded:
            actual = found.get(spec.name)
            if actual is None or not spec.matches(actual):
                shown = f"{list(actual.shape)}" if actual else f"no such {kind}"
                raise ManifestError(f"{folder / entry.path} does not match {MANIFEST}: {kind} '{spec.name}' is "
                                    f"{shown}, the manifest says {list(spec.shape)}; refusing to run it (export again)")


def _listed_entry(path: Path, require_signature: TrustSpec = None) -> tuple[Path, Manifest, ArtifactEntry] | None:
    """The manifest entry of an artifact file that lies in an export folder and is listed there, if any."""
    folder = path.parent
    if not (folder / MANIFEST).is_file():
        return None
    manifest = read_manifest(folder, verify=False, require_signature=require_signature)
    for entry in manifest.artifacts:
        if (folder / entry.path).resolve() == path.resolve():
            return folder, manifest, entry
    return None


def load(path: str | Path, role: str | None = None, threads: int | None = None, shared_cpu: bool = False,
         verify: bool = True, require_signature: TrustSpec = None) -> Backend:
    """Open an artifact file or an export folder (``role`` picks ``model``/``encoder``/``decoder``).

    An export folder, or a file listed in the ``export.json`` beside it, is checked against its manifest
    (``verify=False`` skips the sha256). ``shared_cpu``: other work shares the cores, so idle worker threads
    must not spin (see :class:`Backend`). ``require_signature``: a public key or CA certificate file the folder's
    signature must verify with (default: the ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment variable; see
    :mod:`evit_deploy.signing`), checked before any artifact is opened; the sha256s are then always checked.
    """
    path = Path(path)
    trust = resolve_trust(require_signature)
    verify = verify or trust is not None
    if path.is_dir():
        manifest = read_manifest(path, verify=False, require_signature=trust or False)
        return open_artifact(path, manifest, choose_artifact(manifest, role), threads, shared_cpu, verify)
    listed = _listed_entry(path, trust or False) if path.is_file() else None
    if listed is not None:
        return open_artifact(*listed, threads, shared_cpu, verify)
    if trust is not None:
        raise EvitError(f"a signed export is required ({trust.description}), but {path} is not an artifact listed "
                        f"in an export folder's {MANIFEST}; refused")
    return open_file(path, threads or 0, shared_cpu=shared_cpu)


__all__ = ["BACKENDS", "Backend", "TensorSpec", "backend_for", "check_io", "ensure_registered", "load", "open_artifact",
           "open_file", "register_backend", "runnable_suffixes"]

"""``evit-deploy device-bundle``: a self-contained folder to run an export on a phone or a Jetson with the
device's own tools, and bring back what it needs to check latency and correctness.

Layout (``bundle.json`` lists every other file with its sha256)::

    export/            the export's files (export.json + artifacts; a Jetson build script)
    golden/inputs/     <sample>.<input>.bin (raw, the model's stored dtype) and .npy
    golden/reference/  <sample>.<output>.npy: PyTorch's outputs on the same inputs
    run.sh             the exact command lines (see the tool modules), results into results/
    README.md          how to get and run the tool, how to import the results
    bundle.json        what was exported, the settings, the golden samples, the commands, the hashes
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifacts import MANIFEST, ArtifactEntry, Manifest, confined, read_manifest
from ..errors import EvitError
from ..export import StepReporter, silent_step
from ..files import (
    STAGING_MARKER,
    Owner,
    atomic_write,
    check_replaceable,
    commit_staged,
    sha256_file,
    staged_dir,
    writing,
)
from ..limits import LIMITS
from ..signing import SIGNATURE, TrustSpec
from ..tasks import task_spec
from . import android, jetson  # noqa: F401 - register the tools
from .golden import golden_samples, write_golden
from .settings import DeviceSettings, device_kind
from .steps import render_script
from .tools import EXPORT_DIR, BundleContext, DeviceTool, tool_for

BUNDLE_FILE = "bundle.json"
KIND = "evit-deploy device bundle"
SCHEMA = 1


@dataclass
class Bundle:
    """A device bundle read back (every file hash-checked): its ``bundle.json`` and the export's manifest."""

    folder: Path
    doc: dict[str, Any]
    manifest: Manifest

    @property
    def tool(self) -> DeviceTool:
        return tool_for(self.doc["device"], self.doc["artifact"]["format"])

    @property
    def artifact(self) -> ArtifactEntry:
        path = self.doc["artifact"]["path"].removeprefix(f"{EXPORT_DIR}/")
        return next(a for a in self.manifest.artifacts if a.path == path)


def _role(manifest: Manifest) -> str:
    """The graph a device tool times: the task's timed graph (the SAM prompt decoder is light and stays out)."""
    role = task_spec(manifest.task).timed_role
    if role not in manifest.roles:
        raise EvitError(f"the {manifest.model} export has no image graph (roles: {', '.join(manifest.roles)})")
    return role


def _artifact(manifest: Manifest, role: str, device: str) -> ArtifactEntry:
    kind = device_kind(device)
    for fmt in kind.formats:
        entry = next((a for a in manifest.artifacts if a.role == role and a.format == fmt), None)
        if entry is not None:
            return entry
    have = ", ".join(sorted({a.format for a in manifest.artifacts if a.role == role}))
    targets = {"android": "mobile-cpu-tflite or mobile-cpu-ort", "jetson": "jetson-orin-trt (or any ONNX export)"}
    raise EvitError(f"a {device} bundle runs {' or '.join(kind.formats)} artifacts; this {manifest.target} export of "
                    f"{manifest.model} has {have} for its {role}: export for {targets[device]}")


def _io(folder: Path, artifact: ArtifactEntry) -> dict[str, dict[str, Any]]:
    """Stored dtype and quantization of every input/output (full-int8 .tflite files store int8 I/O)."""
    specs = {s.name: {"shape": list(s.shape), "dtype": s.dtype, "quantization": None}
             for s in [*artifact.inputs, *artifact.outputs]}
    if artifact.format == "tflite" and artifact.precision == "int8":
        from ..runtime import open_file

        backend = open_file(confined(folder, artifact.path), 1)
        for spec in [*backend.stored_inputs, *backend.stored_outputs]:
            specs[spec.name]["dtype"] = spec.dtype
            specs[spec.name]["quantization"] = backend.io_quantization.get(spec.name)
    return specs


def _copy_export(src: Path, dst: Path, manifest: Manifest) -> None:
    """The export's files into the bundle; a signed export's signature travels along (and is checked where the
    bundle is read, when a signature is required)."""
    dst.mkdir(parents=True)
    signature = [SIGNATURE] if (src / SIGNATURE).is_file() else []
    for rel in [MANIFEST, *signature, *manifest.files]:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(confined(src, rel), target)
    for entry in manifest.artifacts:  # the copies are the files the export validated
        if entry.sha256 and sha256_file(dst / entry.path) != entry.sha256:
            raise EvitError(f"{src / entry.path} changed while it was copied into the bundle; try again")


def _bundle_id(device: str, artifact: ArtifactEntry, settings: DeviceSettings, golden: list[dict[str, Any]],
               folder: Path) -> str:
    digest = hashlib.sha256(json.dumps([device, artifact.sha256, asdict(settings)], sort_keys=True).encode())
    for g in golden:
        for spec in g["inputs"].values():
            digest.update(sha256_file(folder / spec["bin"]).encode())
    return digest.hexdigest()[:16]


def _all_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of the bundle but bundle.json (and the staging marker)."""
    return {rel: sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and (rel := p.relative_to(folder).as_posix()) not in (STAGING_MARKER, BUNDLE_FILE)}


def _declared_files(doc: Any, name: str) -> list[str] | None:
    """The files a bundle.json lists (None when it is not a device bundle's)."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(doc.get("files"), dict):
        return None
    return list(doc["files"])


# The ownership rule of device bundles (evit_deploy.files): bundle.json lists every other file of the bundle.
BUNDLE = Owner("device bundle", BUNDLE_FILE, _declared_files)


def make_bundle(export_dir: str | Path, device: str, output: str | Path | None = None,
                settings: DeviceSettings | None = None, weights: str | None = None, force: bool = False,
                step: StepReporter = silent_step, require_signature: TrustSpec = None) -> Path:
    """Write the device bundle of ``export_dir`` for ``device`` (``android`` or ``jetson``); returns its folder.

    The export is read hash-verified (and signature-verified with ``require_signature``, default the
    ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment variable); the golden inputs and PyTorch references are
    computed as the export's validation computed its own (``weights``: the checkpoint the export was made from).
    The folder is built aside and moved into place; an existing folder is replaced only when it is a bundle
    holding nothing else. A signed export is copied with its signature.
    """
    settings = (settings or DeviceSettings()).check()
    kind = device_kind(device)
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir, verify=True, require_signature=require_signature)
    role = _role(manifest)
    artifact = _artifact(manifest, role, device)
    tool = tool_for(device, artifact.format)
    output = Path(output) if output else Path("device-bundles") / f"{export_dir.name}-{device}"
    src = export_dir.resolve()
    if output.resolve() == src or src in output.resolve().parents:
        raise EvitError(f"the bundle folder {output} must not be inside the export {export_dir}")
    check_replaceable(output, BUNDLE, force)  # before the work, not after it
    io = _io(export_dir, artifact)
    samples = golden_samples(export_dir, manifest, role, weights, step)
    with writing(f"write the device bundle {output}"), staged_dir(output, "device bundle") as tmp:
        with step(f"copy the export and write {len(samples)} golden inputs"):
            _copy_export(export_dir, tmp / EXPORT_DIR, manifest)
            golden = write_golden(tmp, samples, io)
        bundle_id = _bundle_id(device, artifact, settings, golden, tmp)
        ctx = BundleContext(tmp, device, manifest, artifact, settings, golden, io, bundle_id)
        tool.prepare(ctx)
        steps = tool.steps(ctx)
        header = [f"{manifest.model} ({manifest.target}, {artifact.precision}) on {kind.description} with "
                  f"{tool.description}.",
                  f"Written by evit-deploy {__version__}; bundle {bundle_id}. Results go to results/.", "",
                  *tool.header(ctx)]
        atomic_write(tmp / "run.sh", render_script(header, [f"BUNDLE_ID={bundle_id}", *tool.setup(ctx)], steps),
                     mode=0o755)
        atomic_write(tmp / "README.md", _readme(ctx, tool, f"{kind.description} with {tool.description}"))
        for g in golden:
            g["device_output"] = tool.output_file(g["stem"])
        doc = {
            "schema": SCHEMA, "kind": KIND, "bundle_id": bundle_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "evit_deploy": __version__,
            "device": device, "device_class": kind.device_class, "tool": tool.name,
            "model": manifest.model, "task": manifest.task, "target": manifest.target,
            "precision": manifest.precision, "input_size": list(manifest.input_size),
            "export": {"source": str(src), "folder": EXPORT_DIR, "created": manifest.created,
                       "weights": manifest.weights},
            "artifact": {"role": role, "format": artifact.format, "path": ctx.artifact_path,
                         "sha256": artifact.sha256, "bytes": (tmp / ctx.artifact_path).stat().st_size,
                         "precision": artifact.precision,
                         "inputs": [{"name": s.name, **io[s.name]} for s in artifact.inputs],
                         "outputs": [{"name": s.name, **io[s.name]} for s in artifact.outputs]},
            "settings": asdict(settings),
            "run": {**ctx.facts, "timing_log": tool.timing_log,
                    "steps": [s.to_dict() for s in steps]},
            "golden": golden,
            "files": _all_files(tmp),
        }
        atomic_write(tmp / BUNDLE_FILE, json.dumps(doc, indent=2) + "\n")
        commit_staged(tmp, output, BUNDLE, force)
    return output


def read_bundle(folder: str | Path, require_signature: TrustSpec = None) -> Bundle:
    """Read ``folder/bundle.json`` and check every file it lists against its sha256 (and the export inside; with
    ``require_signature``, default the ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment variable, the export's
    signature too)."""
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise EvitError(f"{folder} is not a device bundle (no {BUNDLE_FILE}; make one with evit-deploy device-bundle)")
    if path.stat().st_size > LIMITS.max_manifest_bytes:
        raise EvitError(f"{path} is larger than {LIMITS.max_manifest_bytes} bytes: not a bundle of ours")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvitError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise EvitError(f"{path} is not an evit-deploy device bundle")
    if doc.get("schema") != SCHEMA:
        raise EvitError(f"{path} has schema {doc.get('schema')!r}; this evit-deploy reads schema {SCHEMA}")
    for rel, sha in doc["files"].items():
        file = confined(folder, rel)
        if not file.is_file():
            raise EvitError(f"the bundle {folder} is incomplete: {rel} is missing")
        if sha256_file(file) != sha:
            raise EvitError(f"the bundle {folder} was modified: {rel} differs from bundle.json (sha256); make the "
                            "bundle again")
    manifest = read_manifest(folder / EXPORT_DIR, verify=True, require_signature=require_signature)
    return Bundle(folder, doc, manifest)


def _readme(ctx: BundleContext, tool: DeviceTool, description: str) -> str:
    m, a = ctx.manifest, ctx.artifact
    samples = "\n".join(f"| `{g['stem']}` | {g['label']} | "
                        + ", ".join(f"`{n}` {'x'.join(map(str, s['shape']))} {s['dtype']}"
                                    for n, s in g["inputs"].items())
                        + " |" for g in ctx.golden)
    return f"""# Device bundle: {m.model} on {description}

Export `{m.target}` ({a.precision}, input {m.input_size[0]}x{m.input_size[1]}), artifact `{ctx.artifact_path}`
(sha256 `{a.sha256[:16]}…`), bundle `{ctx.bundle_id}`. Made by evit-deploy {__version__}.

| file | what it is |
|---|---|
| `{EXPORT_DIR}/` | the export: `export.json` (profile, tolerances, validation figures) and its artifacts |
| `golden/inputs/` | golden inputs: `<sample>.<input>.bin` (raw, C order, the model's stored dtype) and `.npy` |
| `golden/reference/` | PyTorch's outputs on the golden inputs (`<sample>.<output>.npy`, float32) |
| `run.sh` | the exact command lines; everything it produces goes to `results/` |
| `bundle.json` | what was exported, the settings, the samples, the commands, the sha256 of every file |

The golden inputs are the export's own validation inputs (its photos and noise), pre-processed exactly as its
validation did, and the references come from the same PyTorch model (same weights and transforms):

| sample | from | inputs |
|---|---|---|
{samples}

{tool.readme(ctx)}
## Import the results

`evit-deploy bench import results --bundle . --device-name "<your device>" [--output DIR]` parses what the tool
wrote and writes `report.json`, `report.md` and `report.html` like `evit-deploy bench`: every row labelled with
the device you name, beside the paper's figure for this device class, with the per-layer table when profiled
and the correctness of the device's outputs against `golden/reference` under the export's tolerance (the
`validate` gate). Results from another bundle or model are refused.

## What was verified

These command lines follow the tools' documentation; evit-deploy's tests run them against stand-ins (a fake
`adb` that records its arguments) and parse output samples written in the tools' documented formats. Nothing
in this bundle has been run on a real phone or Jetson by evit-deploy: the first real run is yours.
"""

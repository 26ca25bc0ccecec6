"""``write_repository``: the Triton model repository of an export folder, laid out as :mod:`evit_deploy.triton`
describes, plus the README written beside the pipeline model.

Everything is written under the repository folder: the models are built in a staging folder there and each moved
into place whole; only model folders this command wrote (they carry its marker) are ever replaced.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import MANIFEST, ArtifactEntry, Manifest, check_name, confined, read_manifest
from ..errors import EvitError
from ..files import (
    STAGING_MARKER,
    Owner,
    declare,
    listed_files,
    owned_by,
    owns_folder,
    replace_dir,
    staged_dir,
    writing,
)
from ..signing import TrustSpec
from ..tasks import task_spec
from .configs import (
    PIPELINE_SETTINGS,
    PLATFORMS,
    Platform,
    graph_config,
    graph_runner_files,
    instance_kind,
    model_filename,
    model_py,
    pick_artifact,
    pipeline_config,
)
from .pbtxt import to_pbtxt
from .signature import carry_export, graph_files

OWNER_MARKER = ".evit-deploy-triton"  # in every model folder this command writes: its declaration (files.declare)
WRITER = "evit-deploy triton"


@dataclass
class TritonModel:
    """One model written into the repository."""

    name: str
    folder: Path
    config: dict[str, Any]
    platform: str


def _legacy_files(folder: Path) -> list[str] | None:
    """A model folder written before the marker listed its files (its marker is a line of text): what this command
    writes there, i.e. the marker, ``config.pbtxt``, the README and the version folder ``1/``."""
    marker = folder / OWNER_MARKER
    try:
        if marker.is_symlink() or not marker.read_text().startswith(f"written by {WRITER}"):
            return None
    except (OSError, UnicodeDecodeError):
        return None
    return [OWNER_MARKER, "config.pbtxt", "README.md",
            *(p.relative_to(folder).as_posix() for p in (folder / "1").rglob("*") if p.is_file())]


# The ownership rule of Triton model folders (evit_deploy.files): the marker lists every file the model was written
# with; markers of earlier versions (one line of text) are recognised by the layout they were written with.
TRITON_MODEL = Owner("Triton model", OWNER_MARKER, listed_files(WRITER), legacy=_legacy_files)


def write_repository(export_dir: str | Path, repo: str | Path, name: str | None = None, instances: int = 1,
                     kind: str = "auto", platform: str = "auto", max_queue_delay_us: int = 5000,
                     overwrite: bool = False, backends: set[str] | None = None, threads: int | None = None,
                     require_signature: TrustSpec = None) -> list[TritonModel]:
    """Write the Triton models of an export into ``repo`` (created if needed); returns what was written.

    ``kind``: ``auto`` (GPU for TensorRT plans or CUDA/TensorRT providers), ``cpu`` or ``gpu``; ``platform``:
    ``auto`` (TensorRT plans, else ONNX Runtime), or a name of :data:`PLATFORMS` (``python``: the graphs run with
    this package's runtime inside Triton's Python backend, which is all a server with the Python backend only can
    load). ``backends``: the backends of the server that will run it, when known (``auto`` then picks among
    them). ``threads``: the graphs' runtime threads (default: the export profile's). Everything is written under
    ``repo``: the models are built in a staging folder there and each moved into place whole. Existing model
    folders of the same names are replaced only with ``overwrite`` and only when this command wrote them.
    ``require_signature``: the export must be signed by this key (default: ``EVIT_DEPLOY_REQUIRE_SIGNATURE``); a
    signed export is carried into the pipeline model with its signature either way
    (:mod:`evit_deploy.triton.signature`).
    """
    export_dir, repo = Path(export_dir), Path(repo)
    manifest = read_manifest(export_dir, verify=True, require_signature=require_signature)
    if instances < 1:
        raise EvitError(f"instances must be >= 1, got {instances}")
    if kind not in ("auto", "cpu", "gpu"):
        raise EvitError(f"kind must be auto, cpu or gpu, got '{kind}'")
    if platform not in ("auto", *PLATFORMS):
        raise EvitError(f"unknown Triton platform '{platform}' (choose auto, {', '.join(PLATFORMS)})")
    base = check_name(name or manifest.model, "Triton model name")
    roles = manifest.roles
    picked = {role: pick_artifact(manifest, role, platform, backends) for role in roles}
    names = {role: check_name(f"{base}-{role}", "Triton model name") for role in roles}
    if repo.exists() and not repo.is_dir():
        raise EvitError(f"--repo {repo} exists and is not a folder")
    for folder in [repo / n for n in [base, *names.values()]]:
        if folder.is_symlink() or folder.exists():
            if not overwrite:
                raise EvitError(f"{folder} exists; pass --force to replace the models of {base}")
            if not owns_folder(folder, TRITON_MODEL):
                raise EvitError(f"{folder} exists and was not written by evit-deploy triton; remove or rename it "
                                "yourself (nothing is deleted for you)")
    gpu_kind = instance_kind(manifest, {p for p, _ in picked.values()}, kind)

    written = []
    created = not repo.exists()
    try:
        _write_models(export_dir, repo, manifest, picked, names, base, instances, gpu_kind, max_queue_delay_us,
                      overwrite, written, manifest.runtime.threads if threads is None else threads)
    except BaseException:
        if created and repo.is_dir() and not any(repo.iterdir()):
            repo.rmdir()  # it was made for this run and holds nothing
        raise
    return written


def _write_models(export_dir: Path, repo: Path, manifest: Manifest, picked: dict[str, tuple[Platform, ArtifactEntry]],
                  names: dict[str, str], base: str, instances: int, gpu_kind: str, max_queue_delay_us: int,
                  overwrite: bool, written: list[TritonModel], threads: int) -> None:
    """Write every model into a staging folder under ``repo``, then move each into place."""
    roles = list(picked)
    with writing(f"write the Triton repository {repo}"), staged_dir(repo / base, "Triton model") as tmp:
        for role, (platform, entry) in picked.items():
            config = graph_config(names[role], platform, entry, manifest, instances, gpu_kind, max_queue_delay_us,
                                  threads)
            folder = tmp / names[role]
            (folder / "1").mkdir(parents=True)
            # the graph and its companions (e.g. the external weights of a graph over 2 GB, by their own name)
            for filename, source in graph_files(entry, model_filename(platform, entry)).items():
                shutil.copyfile(confined(export_dir, source), folder / "1" / filename)
            for filename, text in graph_runner_files(platform, entry, manifest, config, threads).items():
                (folder / "1" / filename).write_text(text)  # the python platform's model.py and graph.json
            (folder / "config.pbtxt").write_text(to_pbtxt(config) + "\n")
            declare(folder, OWNER_MARKER, WRITER, model=manifest.model)
            written.append(TritonModel(names[role], repo / names[role], config, platform.name))

        static = None if manifest.batch.dynamic else manifest.batch.size
        settings = {
            "model": manifest.model, "task": manifest.task, "input_size": list(manifest.input_size),
            "max_batch": manifest.batch.largest, "static_batch": static,
            "graphs": {role: {"name": names[role], "outputs": [o.name for o in picked[role][1].outputs],
                              "artifact": picked[role][1].path, "platform": picked[role][0].name}
                       for role in roles},
            # how the graph models' configs were written (a signature check writes them again to compare)
            "graph_settings": {"instances": instances, "kind": gpu_kind, "max_queue_delay_us": max_queue_delay_us,
                               "threads": threads},
        }
        config = pipeline_config(base, instances, max_queue_delay_us)
        folder = tmp / base
        (folder / "1").mkdir(parents=True)
        settings["signed"] = carry_export(export_dir, folder / "1")
        (folder / "1" / "model.py").write_text(model_py("pipeline", manifest.model, "backend"))
        (folder / "1" / PIPELINE_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
        shutil.copyfile(export_dir / MANIFEST, folder / "1" / MANIFEST)
        (folder / "config.pbtxt").write_text(to_pbtxt(config) + "\n")
        written.insert(0, TritonModel(base, repo / base, config, "python"))
        (folder / "README.md").write_text(repository_readme(base, manifest, written, settings["signed"]))
        declare(folder, OWNER_MARKER, WRITER, model=manifest.model)
        (tmp / STAGING_MARKER).unlink()
        for model in written:
            replace_dir(tmp / model.name, model.folder, owned_by(TRITON_MODEL), overwrite, TRITON_MODEL.what)


def repository_readme(base: str, manifest: Manifest, models: list[TritonModel], signed: bool = False) -> str:
    """How to run and query the repository."""
    rows = "\n".join(f"| `{m.name}` | {m.platform} | {m.config['max_batch_size']} | "
                     f"{'yes' if 'dynamic_batching' in m.config else 'no'} |" for m in models)
    handler = task_spec(manifest.task).handler
    options = handler.request_example
    signed_note = (f"The export was signed: `{base}/1/export/` is the signed export with its `export.sig`. Set "
                   "`EVIT_DEPLOY_REQUIRE_SIGNATURE=/path/to/public_key.pem` in Triton's environment and the pipeline "
                   "model verifies it when it loads (every file as signed; each graph model byte-equal to the signed "
                   "artifact, with the configuration written for it) and does not come up otherwise. Triton loads "
                   "the graph models itself: called directly, they are not checked." if signed else
                   "The export was not signed: with `EVIT_DEPLOY_REQUIRE_SIGNATURE` set in Triton's environment the "
                   "pipeline model refuses to load. Sign the export (`evit-deploy sign`) and write the repository "
                   "again.")
    return f"""# Triton model repository: {manifest.model}

Written by `evit-deploy triton` from an export of `{manifest.model}` ({manifest.task}, input
{manifest.input_size[0]}x{manifest.input_size[1]}, {manifest.precision}, target `{manifest.target}`).

| model | platform | max_batch_size | dynamic batching |
|---|---|---:|---|
{rows}

`{base}` is the entry point: a Python-backend model that decodes the image, pre-processes it exactly as
`evit_deploy.Predictor` does (official evaluation transforms), runs the graph model(s) through BLS (so Triton's
dynamic batcher groups concurrent requests) and returns the post-processed result as JSON, the same JSON as
`evit-deploy serve`. The graph models can also be called directly with pre-processed tensors (see `export.json`
in `{base}/1/` for the normalisation).

## Run

The Python backend needs this package (and its dependencies: torch CPU, pillow, numpy) in Triton's Python:

```bash
docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v "$PWD":/models \\
  nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
  bash -c "pip install 'evit-deploy[onnx]' && tritonserver --model-repository=/models"
```

(run it from the repository folder, the parent of this one; add `--gpus all` for GPU instance groups). Or let
`evit-deploy triton EXPORT --repo R --serve` write the repository and start a server on it (a `tritonserver` on the
PATH, else the one bundled in nvidia-pytriton, which has the Python backend only: `--platform python`).
`curl localhost:8000/v2/health/ready`
answers 200 once every model is loaded. Metrics are on port 8002 (`/metrics`).

## Query

```python
import json
import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("localhost:8000")
image = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
image.set_data_from_numpy(np.array([[open("photo.jpg", "rb").read()]], dtype=object))
options = httpclient.InferInput("OPTIONS", [1, 1], "BYTES")
options.set_data_from_numpy(np.array([[json.dumps({options})]], dtype=object))
result = client.infer("{base}", [image, options]).as_numpy("RESULT")
print(json.loads(result[0, 0]))
```

`OPTIONS` is optional ({'a prompt is needed: points and/or box' if handler.prompted else 'it can be left out'}).
Requests of several images batch along the first axis (`[N, 1]`).

## Signature

{signed_note}
"""

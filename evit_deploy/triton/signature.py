"""A signed export's signature inside a Triton repository, and its check where Triton loads the models.

:func:`carry_export` puts the whole signed export folder, ``export.sig`` included, into the pipeline model's
version folder (``<model>/1/export/``; hard links where the file system allows, else copies). When Triton loads
the pipeline model with ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` set in its environment, :func:`check_repository`
verifies that copy against the trusted key (every file as signed) and holds each graph model Triton runs to it:
its version folder holds exactly the files written for it, each byte-equal (sha256) to the signed artifact or
companion, its ``config.pbtxt`` (and on the python platform its ``model.py`` and ``graph.json``) the one this
package writes for that artifact. Anything else refuses the
pipeline model, so the repository's entry point does not come up.

What this cannot cover: Triton loads the graph models itself (they can be called directly, unchecked), and the
pipeline's own ``model.py`` is trusted as installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..artifacts import ArtifactEntry, Manifest, read_manifest
from ..files import sha256_file
from ..signing import SIGNATURE, SignatureError, Trust, scan_folder
from .configs import graph_config, graph_runner_files, model_filename, platform_of
from .pbtxt import to_pbtxt

EXPORT_COPY = "export"  # in the pipeline model's version folder: the signed export, with its export.sig
CONFIG = "config.pbtxt"


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def carry_export(export_dir: Path, version_folder: Path) -> bool:
    """Copy the export into ``version_folder/export/`` when it is signed (every file, the signature too); returns
    whether it was. An unsigned export is not copied (its repository cannot pass a signature check)."""
    if not (export_dir / SIGNATURE).is_file():
        return False
    for relative in [*scan_folder(export_dir.resolve(), SIGNATURE), SIGNATURE]:
        _link_or_copy(export_dir / relative, version_folder / EXPORT_COPY / relative)
    return True


def graph_files(entry: ArtifactEntry, filename: str) -> dict[str, str]:
    """The files of a graph model's version folder → the export files they are copies of."""
    return {filename: entry.path, **{Path(c).name: c for c in entry.companions}}


def _entry(manifest: Manifest, path: str) -> ArtifactEntry:
    entry = next((a for a in manifest.artifacts if a.path == path), None)
    if entry is None:
        raise SignatureError(f"the repository names {path}, which the signed export does not hold; refused")
    return entry


def check_repository(version_folder: Path, settings: dict[str, Any], trust: Trust) -> Manifest:
    """Verify the signed export carried in the pipeline model and hold every graph model to it (see the module
    docstring); returns the verified manifest. One line (:class:`SignatureError`) on any failure."""
    copy = version_folder / EXPORT_COPY
    if not copy.is_dir():
        raise SignatureError(f"a signed export is required ({trust.description}), but this Triton repository was "
                             f"written from an unsigned export (no {copy}); refused")
    manifest = read_manifest(copy, verify=True, require_signature=trust)
    repo = version_folder.parent.parent
    knobs = settings.get("graph_settings", {})
    for role, graph in settings["graphs"].items():
        entry = _entry(manifest, str(graph.get("artifact", "")))
        if entry.role != role:
            raise SignatureError(f"the repository runs {entry.path} as its {role}; refused")
        folder = repo / graph["name"]
        platform = platform_of(entry, graph.get("platform"))
        threads = knobs.get("threads")
        config = graph_config(graph["name"], platform, entry, manifest, int(knobs.get("instances", 1)),
                              str(knobs.get("kind", "KIND_CPU")), int(knobs.get("max_queue_delay_us", 0)),
                              None if threads is None else int(threads))
        expected = graph_files(entry, model_filename(platform, entry))
        runner = graph_runner_files(platform, entry, manifest, config, None if threads is None else int(threads))
        present = scan_folder(folder / "1")
        if sorted(present) != sorted([*expected, *runner]):
            raise SignatureError(f"Triton model {graph['name']} holds {', '.join(present) or 'nothing'}, not "
                                 f"{', '.join([*expected, *runner])}; refused")
        digests = {entry.path: entry.sha256, **entry.companions}
        for name, source in expected.items():
            if sha256_file(folder / "1" / name) != digests[source]:
                raise SignatureError(f"{folder / '1' / name} is not the signed {source} of the export; refused")
        for name, text in runner.items():  # the python platform's model.py and settings, as written for it
            if (folder / "1" / name).read_text() != text:
                raise SignatureError(f"{folder / '1' / name} is not the one written for the signed {entry.path}; "
                                     "refused")
        if (folder / CONFIG).read_text() != to_pbtxt(config) + "\n":
            raise SignatureError(f"{folder / CONFIG} is not the configuration written for the signed {entry.path}; "
                                 "refused")
    return manifest

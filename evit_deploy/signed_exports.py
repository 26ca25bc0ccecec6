"""Signing and verifying *export folders*: :mod:`evit_deploy.signing` (model-signing over a folder) plus what an
export is (:mod:`evit_deploy.artifacts`).

- :func:`sign_export` signs only a folder that is an intact export holding nothing but what its ``export.json``
  lists (artifacts hash-checked first; any other file is refused, so a signature never vouches for a stray
  file), and writes ``EXPORT/export.sig``. ``export --sign KEY`` calls it as its last step.
- :func:`verify_export` checks a folder against a public key or CA certificates, then reads its ``export.json``
  held to the signed bytes and hash-checks every artifact against it: what a loader with a required signature
  would accept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .artifacts import MANIFEST, Manifest, read_manifest
from .files import STAGING_MARKER
from .signing import SIGNATURE, SignatureError, Signed, SignedFolder, Trust, scan_folder, sign_folder, verify_folder


def _unlisted(folder: Path, manifest: Manifest) -> list[str]:
    listed = {MANIFEST, SIGNATURE, *manifest.files}
    for entry in manifest.artifacts:
        listed.update(entry.paths)
    return [f for f in scan_folder(folder) if f not in listed]


def sign_export(folder: str | os.PathLike, private_key: str | os.PathLike, signature: str | os.PathLike | None = None,
                certificate: str | os.PathLike | None = None, chain: Iterable[str | os.PathLike] = (),
                password: str | None = None) -> Signed:
    """Sign the export ``folder`` (every file, ``export.json`` included) after checking it is intact: its
    manifest valid, every artifact matching its sha256, no file it does not list."""
    folder = Path(folder)
    manifest = read_manifest(folder, verify=True, require_signature=False)
    if (folder / STAGING_MARKER).exists():
        raise SignatureError(f"{folder} is still being written ({STAGING_MARKER}); sign it when it is complete")
    stray = _unlisted(folder, manifest)
    if stray:
        raise SignatureError(f"{folder} holds {', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}, which "
                             f"{MANIFEST} does not list; a signed export holds only what the export wrote (move it "
                             "out, then sign)")
    return sign_folder(folder, private_key, signature, certificate, chain, password)


@dataclass(frozen=True)
class VerifiedExport:
    """An export whose signature and artifacts verified."""

    folder: Path
    manifest: Manifest
    signed: SignedFolder


def verify_export(folder: str | os.PathLike, trust: Trust, signature: str | os.PathLike | None = None
                  ) -> VerifiedExport:
    """Verify the signature of the export ``folder`` against ``trust`` (every file as signed, none added or
    missing), then its ``export.json`` (the signed bytes) and every artifact's sha256."""
    folder = Path(folder)
    signed = verify_folder(folder, trust, signature)
    manifest = read_manifest(folder, verify=True, require_signature=False)
    signed.check_file(MANIFEST, (folder / MANIFEST).read_bytes())  # the manifest parsed is the one signed
    return VerifiedExport(folder, manifest, signed)

"""Signed export folders, through OpenSSF ``model-signing`` (the ``[sign]`` extra).

A signature covers every file of an export folder, ``export.json`` included, and nothing outside it: the
folder's manifest of file digests (sha256 each) is signed as an in-toto statement in a Sigstore bundle, by
``model_signing``'s own signing and verifying API, and written to ``EXPORT/export.sig`` (the one file the
signature leaves out; ``--signature PATH`` puts it elsewhere). Supported signers, all offline: an elliptic-curve
private key (P-256, P-384, P-521) or such a key with its certificate (and chain); Sigstore keyless signing needs
network and is not offered here.

Verification (:func:`verify_folder`) refuses, in one line and before anything of the folder is loaded: a folder
with no signature, a file that is not a signature, a signature by another key (or whose certificate does not
chain to the trusted certificates), and a folder changed after signing (a file edited, added or deleted,
``export.json`` edited). It never follows a symbolic link: a folder holding one (or a FIFO, socket, device) is
refused before any file is hashed. What is trusted is a public-key or CA-certificate PEM file
(:func:`load_trust`), given as ``require_signature=`` / ``--require-signature`` or by the
``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment variable (:func:`resolve_trust`), which
:func:`evit_deploy.artifacts.read_manifest` honours wherever an export is opened. The signed digests are kept
(:class:`SignedFolder`) so the ``export.json`` a loader then reads is held to the signed one, and through its
sha256s every artifact opened after it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EvitError, one_line
from .files import atomic_write, file_kind, sha256_file, writing
from .limits import LIMITS
from .optional import require

SIGNATURE = "export.sig"  # the signature inside an export folder (the only file a signature leaves out)
ENV = "EVIT_DEPLOY_REQUIRE_SIGNATURE"  # a public key or CA certificates: every export opened must be signed
CURVES = {"p256": "SECP256R1", "p384": "SECP384R1", "p521": "SECP521R1"}  # what model-signing signs with
_SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle"
_MAX_SIGNATURE_BYTES = LIMITS.max_manifest_bytes
_CACHE_SIZE = 32


class SignatureError(EvitError):
    """A signature, key or signed folder that does not verify, or cannot be made."""


# ---------------------------------------------------------------------------------------------------- keys


def _crypto() -> tuple[Any, Any]:
    require("model_signing", "signing and verifying exports")  # names the [sign] extra when it is missing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return serialization, ec


def _read_key_file(path: Path, what: str) -> bytes:
    kind = file_kind(path)
    if kind != "file":
        raise SignatureError(f"{what} {path} is {'not found' if kind == 'missing' else kind}")
    if path.stat().st_size > 1 << 20:
        raise SignatureError(f"{what} {path} is larger than 1 MiB: not a PEM key file")
    return path.read_bytes()


def _check_curve(key: Any, path: Path, what: str) -> str:
    """The curve name of an elliptic-curve key model-signing signs with, or a one-line error naming the type."""
    _, ec = _crypto()
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = type(key).__name__.replace("_", "").removesuffix("PrivateKey").removesuffix("PublicKey")
        size = getattr(key, "key_size", None)
        shown = f"{name} {size}-bit" if size else name
        raise SignatureError(f"{what} {path} is a {shown} key; model-signing signs with elliptic-curve keys "
                             f"({', '.join(_SUPPORTED_CURVES.values())}); make one with evit-deploy keygen")
    curve = key.curve.name
    if curve not in _SUPPORTED_CURVES:
        raise SignatureError(f"{what} {path} is an elliptic-curve key on {curve}; model-signing signs with "
                             f"{', '.join(_SUPPORTED_CURVES.values())} only")
    return _SUPPORTED_CURVES[curve]


def load_private_key(path: str | os.PathLike, password: str | None = None) -> Any:
    """The elliptic-curve private key in the PEM file ``path`` (refused in one line: missing, malformed,
    encrypted without ``password``, wrong password, another key type or curve)."""
    serialization, _ = _crypto()
    path = Path(path)
    data = _read_key_file(path, "private key")
    if b"PRIVATE KEY" not in data:
        found = "a public key" if b"PUBLIC KEY" in data else "a certificate" if b"CERTIFICATE" in data else \
            "no PEM private key"
        raise SignatureError(f"private key {path} holds {found}; sign with the private key (PEM)")
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password is not None else None)
    except TypeError:
        raise SignatureError(f"private key {path} is encrypted: give its password (--password-env VAR)") from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises several kinds for bad input
        reason = "wrong password or malformed key" if password is not None else one_line(exc, 120)
        raise SignatureError(f"private key {path} cannot be read ({reason})") from None
    _check_curve(key, path, "private key")
    return key


@dataclass(frozen=True)
class Trust:
    """What a signature must verify against: a public key, or CA certificates its signing certificate chains to.

    ``fingerprint``: sha256 of the file's bytes (a verification is remembered per trust)."""

    path: Path
    kind: str  # "key" | "certificates"
    fingerprint: str
    description: str


TrustSpec = str | os.PathLike | Trust | bool | None  # None: the environment variable decides; False: not required


def load_trust(path: str | os.PathLike) -> Trust:
    """The trust file ``path``: a PEM public key (elliptic curve) or PEM CA certificates, told apart by their
    PEM headers; anything else is a one-line error."""
    serialization, _ = _crypto()
    from cryptography import x509

    path = Path(path).expanduser().absolute()
    data = _read_key_file(path, "public key")
    fingerprint = hashlib.sha256(data).hexdigest()
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise SignatureError(f"certificate file {path} cannot be read ({one_line(exc, 120)})") from None
        return Trust(path, "certificates", fingerprint, f"{len(certificates)} CA certificate(s) in {path}")
    if b"PRIVATE KEY" in data:
        raise SignatureError(f"{path} is a private key; verify with the public key (evit-deploy keygen writes both)")
    if b"PUBLIC KEY" not in data:
        raise SignatureError(f"{path} is neither a PEM public key nor PEM certificates")
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as exc:  # noqa: BLE001 - cryptography raises several kinds for bad input
        raise SignatureError(f"public key {path} cannot be read ({one_line(exc, 120)})") from None
    curve = _check_curve(key, path, "public key")
    return Trust(path, "key", fingerprint, f"{curve} public key {path}")


def resolve_trust(spec: TrustSpec) -> Trust | None:
    """The trust to require: ``spec`` (a path or a :class:`Trust`), else (``None``) the
    ``EVIT_DEPLOY_REQUIRE_SIGNATURE`` environment variable, else None (no signature required). ``False``: none
    required whatever the environment says (a folder this process is still writing)."""
    if isinstance(spec, Trust):
        return spec
    if spec is False:
        return None
    if spec is True:
        raise SignatureError("require_signature=True names no key: give the public key or CA certificate file")
    if spec is None or spec == "":
        spec = os.environ.get(ENV) or None
        if spec is None:
            return None
        try:
            return load_trust(spec)
        except SignatureError as exc:
            raise SignatureError(f"{ENV}: {exc}") from None
    return load_trust(spec)


def generate_keys(private: str | os.PathLike, public: str | os.PathLike, curve: str = "p256",
                  password: str | None = None) -> tuple[Path, Path]:
    """Write a new elliptic-curve key pair as PEM: ``private`` (mode 0600, encrypted when ``password``) and
    ``public``. Existing files are never overwritten."""
    serialization, ec = _crypto()
    if curve not in CURVES:
        raise SignatureError(f"unknown curve '{curve}' (choose {', '.join(CURVES)})")
    private, public = Path(private), Path(public)
    if private.absolute() == public.absolute():
        raise SignatureError("the private and the public key need two different files")
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise SignatureError(f"{path} exists; keys are never overwritten (choose another name)")
    key = ec.generate_private_key(getattr(ec, CURVES[curve])())
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    with writing(f"write the key pair {private}, {public}"):
        private.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            atomic_write(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
        except BaseException:
            private.unlink(missing_ok=True)
            raise
    return private, public


# ---------------------------------------------------------------------------------------------- the folder


def _signature_path(folder: Path, signature: str | os.PathLike | None) -> tuple[Path, str | None]:
    """The signature file and, when it lies inside the folder, its relative path (only ``export.sig`` may)."""
    path = Path(signature) if signature is not None else folder / SIGNATURE
    resolved = path.absolute().resolve()
    if resolved == folder or folder in resolved.parents:
        relative = resolved.relative_to(folder).as_posix()
        if relative != SIGNATURE:
            raise SignatureError(f"a signature inside the export folder must be {folder / SIGNATURE}, not {path} "
                                 "(every other file of the folder is signed)")
        return resolved, relative
    return path, None


def scan_folder(folder: Path, leave_out: str | None = None) -> list[str]:
    """Every file of ``folder`` (relative POSIX paths, sorted; ``leave_out`` excepted), refusing what a signed
    export may not hold: symbolic links (never followed) and anything but regular files and folders."""
    files = []
    for top, dirs, names in os.walk(folder, followlinks=False):
        for name in [*dirs, *names]:
            path = Path(top) / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise SignatureError(f"{folder}: {relative} is a symbolic link; a signed export holds regular files "
                                     "and folders only (links are never followed); refused")
            kind = file_kind(path)
            if kind == "a folder":
                continue
            if kind != "file":
                raise SignatureError(f"{folder}: {relative} is {kind}; a signed export holds regular files and "
                                     "folders only; refused")
            if relative != leave_out:
                files.append(relative)
    return sorted(files)


def _hashing_config(leave_out: str | None) -> Any:
    """model-signing's hashing as both sides use it: one sha256 per file, no symlinks, nothing left out but the
    signature itself (in particular not model-signing's default .git* exclusions)."""
    hashing = require("model_signing.hashing", "signing and verifying exports")
    config = hashing.Config().set_ignored_paths(paths=[leave_out] if leave_out else [], ignore_git_paths=False)
    return config.use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)


# --------------------------------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class Signed:
    """A signature written: where, over how many files, by what."""

    signature: Path
    files: list[str]
    signer: str


def sign_folder(folder: str | os.PathLike, private_key: str | os.PathLike, signature: str | os.PathLike | None = None,
                certificate: str | os.PathLike | None = None, chain: Iterable[str | os.PathLike] = (),
                password: str | None = None) -> Signed:
    """Sign every file of ``folder`` with ``private_key`` (and its ``certificate`` + ``chain``, when given) into
    ``signature`` (default ``folder/export.sig``, replaced atomically). The folder must hold regular files only."""
    signing = require("model_signing.signing", "signing exports")
    folder = Path(folder).absolute().resolve()
    key_path = Path(private_key)
    key = load_private_key(key_path, password)
    target, leave_out = _signature_path(folder, signature)
    if leave_out is None and file_kind(target) not in ("missing", "file"):
        raise SignatureError(f"--signature {target} is {file_kind(target)}; refused")
    if leave_out is None and target.exists() and not _looks_like_signature(target):
        raise SignatureError(f"{target} exists and is not a signature; refusing to overwrite it")
    files = scan_folder(folder, leave_out)
    config = signing.Config()
    try:
        if certificate is not None:
            _check_certificate(Path(certificate), key)
            # model-signing 1.1.1 cannot read an empty chain: a certificate issued by the root itself is its own
            chain_paths = [Path(c) for c in chain] or [Path(certificate)]
            config.use_certificate_signer(private_key=key_path, signing_certificate=Path(certificate),
                                          certificate_chain=chain_paths)
            signer = f"certificate {certificate}"
        else:
            # model-signing 1.1.1 hands the password to cryptography as given, which takes bytes
            config.use_elliptic_key_signer(private_key=key_path,
                                           password=password.encode() if password is not None else None)
            signer = f"key {key_path}"
    except (ValueError, OSError) as exc:
        raise SignatureError(f"cannot sign with {certificate or key_path}: {one_line(exc, 160)}") from None
    config.set_hashing_config(_hashing_config(leave_out))
    with tempfile.TemporaryDirectory(prefix="evit-sign-") as tmp:
        out = Path(tmp) / SIGNATURE  # outside the folder: the signature must not hash itself
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                config.sign(folder, out)
        except (ValueError, OSError) as exc:
            raise SignatureError(f"cannot sign {folder}: {one_line(exc, 200)}") from None
        with writing(f"write the signature {target}"):
            atomic_write(target, out.read_bytes())
    return Signed(target, files, signer)


def _check_certificate(path: Path, key: Any) -> None:
    _crypto()
    from cryptography import x509

    data = _read_key_file(path, "certificate")
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise SignatureError(f"certificate {path} cannot be read ({one_line(exc, 120)})") from None
    if certificate.public_key() != key.public_key():
        raise SignatureError(f"certificate {path} is not the certificate of the private key given")


def _looks_like_signature(path: Path) -> bool:
    try:
        return _read_bundle(path.read_bytes(), path) is not None
    except (OSError, SignatureError):
        return False


# ------------------------------------------------------------------------------------------------- verifying


def _read_bundle(raw: bytes, path: Path) -> dict[str, Any]:
    """The signed statement a signature file carries (not yet verified): a one-line error for anything that is
    not a model-signing signature."""

    def refuse(why: str) -> SignatureError:
        return SignatureError(f"{path} is not a model-signing signature ({why})")

    try:
        bundle = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        raise refuse("not JSON") from None
    except RecursionError:
        raise refuse("nested too deeply") from None
    if not isinstance(bundle, dict) or not str(bundle.get("mediaType", "")).startswith(_BUNDLE_MEDIA_TYPE):
        raise refuse("not a Sigstore bundle")
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise refuse("no DSSE envelope")
    try:
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except (ValueError, binascii.Error, RecursionError):
        raise refuse("its payload is not a JSON statement") from None
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    if not isinstance(predicate, dict) or not isinstance(predicate.get("resources"), list):
        raise refuse("its statement lists no files")
    return predicate


def _signed_files(predicate: dict[str, Any]) -> dict[str, str]:
    files = {}
    for item in predicate["resources"]:
        if isinstance(item, dict) and item.get("algorithm") == "sha256":
            files[str(item.get("name"))] = str(item.get("digest"))
    return files


@dataclass(frozen=True)
class SignedFolder:
    """A folder whose signature verified: the sha256 of every file as signed (relative path → hex digest)."""

    folder: Path
    trust: Trust
    files: dict[str, str] = field(default_factory=dict)

    def check_file(self, relative: str, data: bytes) -> None:
        """Refuse ``data`` read from ``relative`` unless it is what was signed (it changed after verification)."""
        if self.files.get(relative) != hashlib.sha256(data).hexdigest():
            raise SignatureError(f"{self.folder / relative} changed after its signature was verified; refused")


def _policy(folder: Path, predicate: dict[str, Any], leave_out: str | None, where: Path) -> None:
    """A verified signature must be of our kind: one sha256 per file, symlinks not allowed, nothing left unsigned
    but the signature itself."""
    serialization = predicate.get("serialization")
    if not isinstance(serialization, dict) or serialization.get("method") != "files" \
            or serialization.get("hash_type") != "sha256" or serialization.get("allow_symlinks") not in (False, None):
        raise SignatureError(f"{where} was made with other hashing settings than evit-deploy sign uses (one sha256 "
                             "per file, no symbolic links); sign the folder with evit-deploy sign")
    unsigned = sorted(set(map(str, serialization.get("ignore_paths") or [])) - {leave_out})
    if unsigned:
        raise SignatureError(f"{where} leaves {', '.join(unsigned)} of {folder} unsigned; a signature must cover "
                             "every file (sign it with evit-deploy sign)")


def _mismatch(folder: Path, message: str, signed: dict[str, str], present: list[str]) -> str:
    """What changed since signing, in words (the failure path hashes the files both sides list once more)."""
    edited = sorted(f for f in set(present) & set(signed) if sha256_file(folder / f) != signed[f])
    added = sorted(set(present) - set(signed))
    removed = sorted(set(signed) - set(present))
    parts = [f"{what} {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
             for what, names in (("edited", edited), ("added", added), ("deleted", removed)) if names]
    return (f"{folder} changed after it was signed ({'; '.join(parts) or one_line(message, 160)}), or the "
            "signature is of another folder; refused")


def _verify_error(exc: Exception, folder: Path, where: Path, trust: Trust, predicate: dict[str, Any],
                  present: list[str]) -> SignatureError:
    """One line for whatever model-signing raised."""
    from cryptography.exceptions import InvalidSignature

    message = str(exc)
    if isinstance(exc, InvalidSignature) or message.startswith("Key mismatch"):
        return SignatureError(f"{where} was not made with the key {trust.path} (signed by another key, or the "
                              "signature was altered); refused")
    if message.startswith("Signature mismatch"):
        return SignatureError(_mismatch(folder, message, _signed_files(predicate), present))
    if type(exc).__name__ == "X509StoreContextError" or "certificate" in message.lower():
        return SignatureError(f"{where}: its signing certificate does not chain to {trust.description} "
                              f"({one_line(message, 120)}); refused")
    return SignatureError(f"{where} does not verify with {trust.description} ({type(exc).__name__}: "
                          f"{one_line(message, 160)}); refused")


def verify_folder(folder: str | os.PathLike, trust: Trust, signature: str | os.PathLike | None = None
                  ) -> SignedFolder:
    """Verify the signature of ``folder`` (default ``folder/export.sig``) against ``trust``: every file of the
    folder must be as signed, none added or missing. Returns the signed digests; raises :class:`SignatureError`
    in one line naming what failed."""
    verifying = require("model_signing.verifying", "verifying signed exports")
    given = Path(folder)
    folder = given.absolute().resolve()
    if not folder.is_dir():
        raise SignatureError(f"{given} is not a folder")
    where, leave_out = _signature_path(folder, signature)
    kind = file_kind(where)
    if kind == "missing":
        hint = "" if signature is not None else f" (no {SIGNATURE})"
        raise SignatureError(f"{given} is not signed{hint}: a signature by {trust.description} is required; sign it "
                             "with evit-deploy sign")
    if kind != "file":
        raise SignatureError(f"the signature {where} is {kind}, not a file; refused")
    with open(where, "rb") as f:
        raw = f.read(_MAX_SIGNATURE_BYTES + 1)
    if len(raw) > _MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{where} is larger than {_MAX_SIGNATURE_BYTES} bytes: not a signature")
    predicate = _read_bundle(raw, where)
    present = scan_folder(folder, leave_out)  # links and special files are refused before any file is hashed
    config = verifying.Config()
    if trust.kind == "key":
        config.use_elliptic_key_verifier(public_key=trust.path)
    else:
        config.use_certificate_verifier(certificate_chain=[trust.path])
    config.set_hashing_config(_hashing_config(leave_out))
    with tempfile.TemporaryDirectory(prefix="evit-verify-") as tmp:
        private = Path(tmp) / SIGNATURE  # verify exactly the bytes parsed above, whatever happens to the file
        private.write_bytes(raw)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                config.verify(folder, private)
        except SignatureError:
            raise
        except Exception as exc:  # noqa: BLE001 - model-signing and cryptography raise many kinds
            raise _verify_error(exc, folder, where, trust, predicate, present) from None
    _policy(folder, predicate, leave_out, where)
    return SignedFolder(folder, trust, _signed_files(predicate))


_verified: dict[tuple[Any, ...], SignedFolder] = {}
_lock = threading.Lock()


def _state(folder: Path) -> tuple[Any, ...]:
    """What changes when any file of the folder is added, removed or written (sizes, times, inodes; ctime cannot
    be set back by an unprivileged writer)."""
    entries = []
    for top, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted([*dirs, *names]):
            st = os.lstat(Path(top) / name)
            entries.append((top, name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(sorted(entries))


def signed_folder(folder: str | os.PathLike, trust: Trust) -> SignedFolder:
    """:func:`verify_folder` with the default signature, remembered while no file of the folder changes (one
    load opens the manifest several times; each is checked against the signed digests)."""
    resolved = Path(folder).absolute().resolve()
    try:
        signature = (resolved / SIGNATURE).read_bytes() if file_kind(resolved / SIGNATURE) == "file" else b""
        key = (str(resolved), trust.fingerprint, hashlib.sha256(signature).hexdigest(), _state(resolved))
    except OSError:
        key = None
    with _lock:
        if key is not None and key in _verified:
            return _verified[key]
    result = verify_folder(resolved, trust)
    if key is not None:
        with _lock:
            if len(_verified) >= _CACHE_SIZE:
                _verified.pop(next(iter(_verified)))
            _verified[key] = result
    return result

"""Signed export folders (OpenSSF model-signing): sign, verify, and refuse where engines load — an unsigned folder,
another key, each kind of tampering, bad keys and signature files — in one line, before any artifact is opened.
The tests make their own keys and certificates (cryptography)."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from PIL import Image

from evit_deploy import runtime
from evit_deploy.artifacts import MANIFEST, read_manifest
from evit_deploy.device.bundle import _copy_export
from evit_deploy.errors import EvitError
from evit_deploy.predict import Predictor
from evit_deploy.samples import sample_photo
from evit_deploy.serve import create_app
from evit_deploy.serve.client import ServerProcess
from evit_deploy.signed_exports import sign_export, verify_export
from evit_deploy.signing import (
    ENV,
    SIGNATURE,
    SignatureError,
    generate_keys,
    load_trust,
    verify_folder,
)
from evit_deploy.triton import write_repository
from evit_deploy.triton.backend import TritonPythonModel

from .helpers import run_cli
from .shared_exports import LIGHT_PROFILE, build_cls_export


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """A signing key pair, another P-384 pair, and keys model-signing does not take (RSA, Ed25519, P-224)."""
    root = tmp_path_factory.mktemp("keys")
    generate_keys(root / "key.pem", root / "key.pub")
    generate_keys(root / "other.pem", root / "other.pub", curve="p384")
    for name, key in (("rsa", rsa.generate_private_key(65537, 2048)), ("ed25519", ed25519.Ed25519PrivateKey.generate()),
                      ("p224", ec.generate_private_key(ec.SECP224R1()))):
        (root / f"{name}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        (root / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (root / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    (root / "garbage-private.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys) -> Path:
    """The shared classification export, signed (never modified: tests copy it)."""
    folder = tmp_path_factory.mktemp("signed") / "export"
    shutil.copytree(build_cls_export()[0], folder)
    sign_export(folder, keys["key.pem"])
    return folder


@pytest.fixture()
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(sample_photo("coffee")).save(path)
    return path


def copy_of(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    shutil.copytree(folder, tmp_path / name)
    return tmp_path / name


def one_line_exit_2(capsys, args: list[str]) -> str:  # noqa: ANN001
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len([ln for ln in lines if ln.startswith("error")]) == 1, lines
    assert lines[-1].startswith("error: ") and "internal error" not in lines[-1], lines
    return lines[-1]


def edit_file(folder: Path) -> str:
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-20] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    return "edited model.onnx"


def add_file(folder: Path) -> str:
    (folder / "notes.txt").write_text("added after signing")
    return "added notes.txt"


def delete_file(folder: Path) -> str:
    (folder / "model.onnx").unlink()
    return "deleted model.onnx"


def edit_manifest(folder: Path) -> str:
    data = json.loads((folder / MANIFEST).read_text())
    data["runtime"]["threads"] = 2  # a valid manifest, consistent hashes: only the signature can tell
    (folder / MANIFEST).write_text(json.dumps(data))
    return "edited export.json"


def add_git_folder(folder: Path) -> str:
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("model-signing leaves .git out by default; we do not")
    return "added .git/config"


TAMPERING = [edit_file, add_file, delete_file, edit_manifest, add_git_folder]


# -- signing and verifying -------------------------------------------------------------------------------------------
def test_sign_then_verify_covers_every_file_and_nothing_else(signed, keys, tmp_path, capsys):
    trust = load_trust(keys["key.pub"])
    done = verify_folder(signed, trust)
    assert sorted(done.files) == sorted([MANIFEST, "model.onnx"])  # every file but the signature itself
    assert verify_export(signed, trust).manifest.model == "efficientvit-b0-r224"
    assert run_cli(["verify", str(signed), "--public-key", str(keys["key.pub"])]) == 0
    assert "verified: 2 files" in capsys.readouterr().out
    moved = copy_of(signed, tmp_path, "renamed-elsewhere")  # a copied or renamed folder still verifies
    verify_folder(moved, trust)


def test_the_signature_is_model_signings_own_format(signed):
    bundle = json.loads((signed / SIGNATURE).read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["predicate"]["serialization"]["ignore_paths"] == [SIGNATURE]


@pytest.mark.parametrize("tamper", TAMPERING, ids=lambda f: f.__name__)
def test_every_kind_of_tampering_is_refused_before_anything_loads(signed, keys, tmp_path, capsys, monkeypatch,
                                                                    tamper, photo):
    folder = copy_of(signed, tmp_path)
    what = tamper(folder)
    trust = load_trust(keys["key.pub"])
    with pytest.raises(SignatureError, match=f"changed after it was signed \\({what}\\)"):
        verify_folder(folder, trust)
    opened = []
    monkeypatch.setattr("evit_deploy.runtime.open_file", lambda *a, **k: opened.append(a))
    with pytest.raises(SignatureError, match=what):
        Predictor.from_export(folder, require_signature=keys["key.pub"])
    with pytest.raises(SignatureError, match=what):
        runtime.load(folder, require_signature=keys["key.pub"])
    monkeypatch.setenv(ENV, str(keys["key.pub"]))
    with pytest.raises(SignatureError, match=what):
        runtime.load(folder)
    with pytest.raises(SignatureError, match=what):
        read_manifest(folder, verify=False)
    assert not opened  # nothing of the folder reached a runtime
    monkeypatch.delenv(ENV)
    line = one_line_exit_2(capsys, ["predict", str(folder), str(photo), "-o", str(tmp_path / "out"),
                                    "--require-signature", str(keys["key.pub"])])
    assert what in line and not (tmp_path / "out").exists()
    assert what in one_line_exit_2(capsys, ["verify", str(folder), "--public-key", str(keys["key.pub"])])


def test_unsigned_folder_other_key_and_another_folders_signature_are_refused(signed, keys, tmp_path, capsys, photo):
    unsigned = copy_of(build_cls_export()[0], tmp_path, "unsigned")
    line = one_line_exit_2(capsys, ["predict", str(unsigned), str(photo), "--require-signature",
                                    str(keys["key.pub"])])
    assert "is not signed (no export.sig)" in line
    other = copy_of(signed, tmp_path, "other-key")
    sign_export(other, keys["other.pem"])
    for folder, key in ((other, "key.pub"), (signed, "other.pub")):
        assert "not made with the key" in one_line_exit_2(capsys, ["verify", str(folder), "--public-key",
                                                                   str(keys[key])])
    another = copy_of(signed, tmp_path, "another")  # another folder, signed by the same key
    edit_manifest(another)
    sign_export(another, keys["key.pem"])
    borrowed = copy_of(signed, tmp_path, "borrowed")
    shutil.copyfile(another / SIGNATURE, borrowed / SIGNATURE)  # a valid signature, of another folder
    line = one_line_exit_2(capsys, ["verify", str(borrowed), "--public-key", str(keys["key.pub"])])
    assert "edited export.json" in line and "or the signature is of another folder" in line


def test_serve_and_predict_with_require_signature(signed, keys, tmp_path, photo):
    """The issue's check: the untouched signed folder is served; tampered folders and another key are refused
    by `serve --require-signature` (exit 2, one line) before the model loads."""
    server = ServerProcess(signed, extra=["--require-signature", str(keys["key.pub"])])
    try:
        url = server.start()
        r = httpx.post(f"{url}/v1/predict", content=photo.read_bytes(), headers={"content-type": "image/png"},
                       timeout=60)
        assert r.status_code == 200 and r.json()["top_k"]
    finally:
        server.close()
    for tamper in (edit_file, edit_manifest):
        folder = copy_of(signed, tmp_path, tamper.__name__)
        what = tamper(folder)
        result = subprocess.run([sys.executable, "-m", "evit_deploy", "serve", str(folder), "--port", "0",
                                 "--require-signature", str(keys["key.pub"])], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
        assert what in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "evit_deploy", "serve", str(signed), "--port", "0"],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, **{ENV: str(
                                keys["other.pub"])}))
    assert result.returncode == 2 and "not made with the key" in result.stderr


def test_the_environment_variable_is_honoured_where_engines_load(signed, keys, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(keys["key.pub"]))
    assert runtime.load(signed).inputs[0].name == "input"
    assert Predictor.from_export(signed).model == "efficientvit-b0-r224"
    with TestClient(create_app(signed, max_batch=2)) as client:
        buffer = io.BytesIO()
        Image.fromarray(sample_photo("coffee")).save(buffer, format="PNG")
        assert client.post("/v1/predict", content=buffer.getvalue(),
                           headers={"content-type": "image/png"}).status_code == 200
    unsigned = copy_of(build_cls_export()[0], tmp_path, "unsigned")
    for load in (lambda: runtime.load(unsigned), lambda: Predictor.from_export(unsigned),
                 lambda: create_app(unsigned), lambda: runtime.load(unsigned / "model.onnx"),
                 lambda: write_repository(unsigned, tmp_path / "repo")):
        with pytest.raises(SignatureError, match="is not signed"):
            load()
    loose = tmp_path / "loose.onnx"  # a graph file outside any export folder: nothing to verify, refused
    shutil.copyfile(unsigned / "model.onnx", loose)
    with pytest.raises(EvitError, match="not an artifact listed"):
        runtime.load(loose)
    monkeypatch.setenv(ENV, str(tmp_path / "missing.pub"))
    with pytest.raises(SignatureError, match=f"{ENV}: public key .* is not found"):
        runtime.load(signed)


def test_a_change_after_a_first_verification_in_the_same_process_is_seen(signed, keys, tmp_path):
    folder = copy_of(signed, tmp_path)
    trust = load_trust(keys["key.pub"])
    runtime.load(folder, require_signature=trust)
    (folder / "late.bin").write_bytes(b"x")
    with pytest.raises(SignatureError, match="added late.bin"):
        runtime.load(folder, require_signature=trust)


def test_verification_never_follows_a_symlink_out_of_the_folder(signed, keys, tmp_path, capsys):
    folder = copy_of(signed, tmp_path)
    secret = tmp_path / "outside.bin"
    secret.write_bytes(b"not part of the export")
    (folder / "link.bin").symlink_to(secret)
    line = one_line_exit_2(capsys, ["verify", str(folder), "--public-key", str(keys["key.pub"])])
    assert "link.bin is a symbolic link" in line
    (folder / "link.bin").unlink()
    (folder / "sub").symlink_to(tmp_path, target_is_directory=True)
    assert "sub is a symbolic link" in one_line_exit_2(capsys, ["verify", str(folder), "--public-key",
                                                                str(keys["key.pub"])])
    assert "symbolic link" in one_line_exit_2(capsys, ["sign", str(folder), "--key", str(keys["key.pem"])])


def test_a_fifo_in_a_signed_folder_is_named_not_opened(signed, keys, tmp_path, capsys):
    folder = copy_of(signed, tmp_path)
    os.mkfifo(folder / "pipe")
    assert "pipe is a FIFO" in one_line_exit_2(capsys, ["verify", str(folder), "--public-key", str(keys["key.pub"])])


# -- bad input: keys and signature files ------------------------------------------------------------------------------
@pytest.mark.parametrize("key, message", [
    ("rsa.pem", "is a RSA 2048-bit key; model-signing signs with elliptic-curve keys"),
    ("ed25519.pem", "is a Ed25519 key"),
    ("p224.pem", "elliptic-curve key on secp224r1"),
    ("key.pub", "holds a public key; sign with the private key"),
    ("garbage-private.pem", "cannot be read"),
    ("missing.pem", "is not found"),
])
def test_bad_signing_keys_are_one_line(signed, keys, tmp_path, capsys, key, message):
    folder = copy_of(build_cls_export()[0], tmp_path)
    path = keys.get(key, tmp_path / key)
    assert message in one_line_exit_2(capsys, ["sign", str(folder), "--key", str(path)])
    assert not (folder / SIGNATURE).exists()


@pytest.mark.parametrize("key, message", [
    ("rsa.pub", "is a RSA 2048-bit key"),
    ("ed25519.pub", "is a Ed25519 key"),
    ("p224.pub", "secp224r1"),
    ("key.pem", "is a private key; verify with the public key"),
    ("garbage.pem", "cannot be read"),
])
def test_bad_verifying_keys_are_one_line_and_nothing_loads(signed, keys, capsys, key, message, photo, tmp_path):
    assert message in one_line_exit_2(capsys, ["verify", str(signed), "--public-key", str(keys[key])])
    assert message in one_line_exit_2(capsys, ["predict", str(signed), str(photo), "-o", str(tmp_path / "o"),
                                               "--require-signature", str(keys[key])])


@pytest.mark.parametrize("content, message", [
    (b"", "not JSON"),
    (b"\xff\xfe binary", "not JSON"),
    (b"{}", "not a Sigstore bundle"),
    (b"[" * 100_000, "nested too deeply"),
    (json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}).encode(), "no DSSE envelope"),
    (json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                 "dsseEnvelope": {"payload": "bm90IGpzb24="}}).encode(), "payload is not a JSON statement"),
])
def test_a_file_that_is_not_a_signature_is_one_line(signed, keys, tmp_path, capsys, content, message):
    folder = copy_of(signed, tmp_path)
    (folder / SIGNATURE).write_bytes(content)
    line = one_line_exit_2(capsys, ["verify", str(folder), "--public-key", str(keys["key.pub"])])
    assert "is not a model-signing signature" in line and message in line


def test_an_altered_signature_is_refused(signed, keys, tmp_path, capsys):
    folder = copy_of(signed, tmp_path)
    bundle = json.loads((folder / SIGNATURE).read_text())
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[10] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (folder / SIGNATURE).write_text(json.dumps(bundle))
    assert "refused" in one_line_exit_2(capsys, ["verify", str(folder), "--public-key", str(keys["key.pub"])])


def test_sign_refuses_a_tampered_export_or_stray_files(signed, keys, tmp_path, capsys):
    folder = copy_of(build_cls_export()[0], tmp_path)
    (folder / "notes.txt").write_text("x")
    assert "which export.json does not list" in one_line_exit_2(capsys, ["sign", str(folder), "--key",
                                                                        str(keys["key.pem"])])
    (folder / "notes.txt").unlink()
    edit_file(folder)
    assert "was swapped, modified or is corrupt" in one_line_exit_2(capsys, ["sign", str(folder), "--key",
                                                                             str(keys["key.pem"])])
    assert not (folder / SIGNATURE).exists()


def test_signature_elsewhere_and_inside_the_folder_only_as_export_sig(signed, keys, tmp_path, capsys):
    folder = copy_of(build_cls_export()[0], tmp_path)
    outside = tmp_path / "sigs" / "export.sig"
    outside.parent.mkdir()
    assert run_cli(["sign", str(folder), "--key", str(keys["key.pem"]), "--signature", str(outside)]) == 0
    assert not (folder / SIGNATURE).exists()
    assert run_cli(["verify", str(folder), "--public-key", str(keys["key.pub"]), "--signature", str(outside)]) == 0
    assert "must be" in one_line_exit_2(capsys, ["sign", str(folder), "--key", str(keys["key.pem"]),
                                                 "--signature", str(folder / "x.sig")])
    (tmp_path / "precious.txt").write_text("mine")
    assert "is not a signature; refusing to overwrite" in one_line_exit_2(
        capsys, ["sign", str(folder), "--key", str(keys["key.pem"]), "--signature", str(tmp_path / "precious.txt")])
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_keygen_never_overwrites_and_keeps_the_private_key_private(tmp_path, capsys):
    private, public = tmp_path / "a.pem", tmp_path / "a.pub"
    assert run_cli(["keygen", "--private-key", str(private), "--public-key", str(public)]) == 0
    assert private.stat().st_mode & 0o777 == 0o600
    before = private.read_bytes()
    assert "exists; keys are never overwritten" in one_line_exit_2(
        capsys, ["keygen", "--private-key", str(private), "--public-key", str(tmp_path / "b.pub")])
    assert private.read_bytes() == before


def test_encrypted_keys_need_their_password(tmp_path, capsys, monkeypatch):
    generate_keys(tmp_path / "enc.pem", tmp_path / "enc.pub", password="s3cret")
    folder = copy_of(build_cls_export()[0], tmp_path)
    assert "is encrypted" in one_line_exit_2(capsys, ["sign", str(folder), "--key", str(tmp_path / "enc.pem")])
    monkeypatch.setenv("KEY_PASSWORD", "wrong")
    assert "wrong password" in one_line_exit_2(capsys, ["sign", str(folder), "--key", str(tmp_path / "enc.pem"),
                                                        "--password-env", "KEY_PASSWORD"])
    monkeypatch.setenv("KEY_PASSWORD", "s3cret")
    assert run_cli(["sign", str(folder), "--key", str(tmp_path / "enc.pem"), "--password-env", "KEY_PASSWORD"]) == 0
    verify_folder(folder, load_trust(tmp_path / "enc.pub"))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl on this machine")
def test_keys_made_with_the_documented_openssl_lines_work(tmp_path):
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                    str(tmp_path / "key.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", str(tmp_path / "key.pem"), "-pubout", "-out",
                    str(tmp_path / "key.pub.pem")], check=True, capture_output=True)
    folder = copy_of(build_cls_export()[0], tmp_path)
    sign_export(folder, tmp_path / "key.pem")
    verify_folder(folder, load_trust(tmp_path / "key.pub.pem"))


# -- certificate chains (offline) --------------------------------------------------------------------------------------
def _certificate(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:  # noqa: ANN001
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                                            decipher_only=False), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def test_certificate_chains_sign_and_verify_offline(tmp_path, capsys, photo):
    ca_key, other_ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("evit test CA", ca_key, "evit test CA", ca_key, ca=True)
    other_ca = _certificate("another CA", other_ca_key, "another CA", other_ca_key, ca=True)
    leaf = _certificate("build machine", leaf_key, "evit test CA", ca_key, ca=False)
    (tmp_path / "leaf.pem").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
    folder = copy_of(build_cls_export()[0], tmp_path)
    assert run_cli(["sign", str(folder), "--key", str(tmp_path / "leaf.pem"), "--certificate",
                    str(_pem(tmp_path / "leaf.crt", leaf))]) == 0
    ca_file, other_file = _pem(tmp_path / "ca.crt", ca), _pem(tmp_path / "other.crt", other_ca)
    assert run_cli(["verify", str(folder), "--certificate-chain", str(ca_file)]) == 0
    assert run_cli(["predict", str(folder), str(photo), "-o", str(tmp_path / "out"), "--require-signature",
                    str(ca_file)]) == 0
    assert "does not chain to" in one_line_exit_2(capsys, ["verify", str(folder), "--certificate-chain",
                                                           str(other_file)])
    fresh = copy_of(build_cls_export()[0], tmp_path, "fresh")
    assert "is not the certificate of the private key" in one_line_exit_2(
        capsys, ["sign", str(fresh), "--key", str(tmp_path / "leaf.pem"), "--certificate", str(ca_file)])
    edit_file(folder)
    assert "edited model.onnx" in one_line_exit_2(capsys, ["verify", str(folder), "--certificate-chain",
                                                           str(ca_file)])


# -- export --sign, Triton, device bundles ----------------------------------------------------------------------------
def test_export_sign_signs_the_finished_folder_as_the_last_step(tmp_path, keys, capsys):
    light = tmp_path / "light.yaml"
    light.write_text(LIGHT_PROFILE)
    out = tmp_path / "exp"
    assert "private key" in one_line_exit_2(capsys, ["export", "efficientvit-b0-r224", "-t", str(light), "--imgsz",
                                                     "64", "-o", str(out), "--sign", str(keys["rsa.pem"])])
    assert not out.exists()  # a bad key fails before the export's work
    assert run_cli(["export", "efficientvit-b0-r224", "-t", str(light), "--imgsz", "64", "-o", str(out),
                    "--sign", str(keys["key.pem"])]) == 0
    done = verify_export(out, load_trust(keys["key.pub"]))
    assert sorted(done.signed.files) == sorted([MANIFEST, *done.manifest.files])
    assert not any(p.name.startswith(".exp.tmp") for p in tmp_path.iterdir())
    assert np.isfinite(runtime.load(out, require_signature=keys["key.pub"])(np.zeros((1, 3, 64, 64),
                                                                                      np.float32))).all()


def test_triton_repository_carries_the_signature_and_the_pipeline_checks_it(signed, keys, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    models = write_repository(signed, repo, require_signature=keys["key.pub"])
    pipeline = models[0].folder
    assert (pipeline / "1" / "export" / SIGNATURE).is_file()
    assert "The export was signed" in (pipeline / "README.md").read_text()
    args = {"model_repository": str(pipeline), "model_version": "1"}
    monkeypatch.setenv(ENV, str(keys["key.pub"]))
    TritonPythonModel().initialize(args)  # verifies the carried export and holds each graph model to it
    graph = next(m for m in models if m.platform == "onnxruntime_onnx").folder
    original = (graph / "1" / "model.onnx").read_bytes()
    (graph / "1" / "model.onnx").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(SignatureError, match="is not the signed model.onnx"):
        TritonPythonModel().initialize(args)
    (graph / "1" / "model.onnx").write_bytes(original)
    (graph / "1" / "evil.onnx").write_bytes(original)
    with pytest.raises(SignatureError, match="holds evil.onnx, model.onnx"):
        TritonPythonModel().initialize(args)
    (graph / "1" / "evil.onnx").unlink()
    config = (graph / "config.pbtxt").read_text()
    (graph / "config.pbtxt").write_text(config.replace('"model.onnx"', '"evil.onnx"'))
    with pytest.raises(SignatureError, match="is not the configuration written"):
        TritonPythonModel().initialize(args)
    (graph / "config.pbtxt").write_text(config)
    (pipeline / "1" / "export" / "notes.txt").write_text("x")
    with pytest.raises(SignatureError, match="added notes.txt"):
        TritonPythonModel().initialize(args)
    monkeypatch.delenv(ENV)
    plain = write_repository(build_cls_export()[0], tmp_path / "plain")[0].folder
    assert not (plain / "1" / "export").exists()
    monkeypatch.setenv(ENV, str(keys["key.pub"]))
    with pytest.raises(SignatureError, match="written from an unsigned export"):
        TritonPythonModel().initialize({"model_repository": str(plain), "model_version": "1"})


def test_triton_python_platform_graphs_are_held_to_the_signature(signed, keys, tmp_path, monkeypatch):
    """On the python platform a graph model's model.py and graph.json (which file, which sha256, which threads)
    are checked too: an edited graph.json refuses the pipeline model."""
    models = write_repository(signed, tmp_path / "repo", platform="python", require_signature=keys["key.pub"])
    args = {"model_repository": str(models[0].folder), "model_version": "1"}
    monkeypatch.setenv(ENV, str(keys["key.pub"]))
    TritonPythonModel().initialize(args)
    settings = models[1].folder / "1" / "graph.json"
    edited = json.loads(settings.read_text()) | {"threads": 64}
    settings.write_text(json.dumps(edited, indent=2) + "\n")
    with pytest.raises(SignatureError, match="graph.json is not the one written"):
        TritonPythonModel().initialize(args)


def test_device_bundles_carry_the_signature_and_it_is_checked_where_they_are_read(signed, keys, tmp_path):
    manifest = read_manifest(signed)
    _copy_export(signed, tmp_path / "bundle" / "export", manifest)
    copied = tmp_path / "bundle" / "export"
    assert (copied / SIGNATURE).read_bytes() == (signed / SIGNATURE).read_bytes()
    assert read_manifest(copied, require_signature=keys["key.pub"]).model == manifest.model
    edit_manifest(copied)
    with pytest.raises(SignatureError, match="edited export.json"):
        read_manifest(copied, require_signature=keys["key.pub"])


def test_every_command_that_loads_an_export_takes_require_signature(signed, keys, tmp_path, capsys, photo):
    other = str(keys["other.pub"])
    for args in (["predict", str(signed), str(photo), "-o", str(tmp_path / "out")],
                 ["serve", str(signed), "--port", "0"],
                 ["eval", str(signed), "--data", str(tmp_path), "-o", str(tmp_path / "report")],
                 ["triton", str(signed), "--repo", str(tmp_path / "repo")],
                 ["device-bundle", str(signed), "--device", "jetson", "-o", str(tmp_path / "bundle")]):
        assert "not made with the key" in one_line_exit_2(capsys, [*args, "--require-signature", other]), args
    assert not any((tmp_path / name).exists() for name in ("out", "report", "repo", "bundle"))


def test_ray_serve_checks_in_the_driver_and_hands_the_key_to_every_replica(signed, keys, tmp_path, monkeypatch):
    """Replicas may run on nodes without the environment variable: the driver's trust file travels in their
    settings (Ray's bound arguments, read through its private attribute)."""
    pytest.importorskip("ray.serve")
    from evit_deploy.cluster.serving import build_application

    monkeypatch.setenv(ENV, str(keys["key.pub"]))
    with pytest.raises(SignatureError, match="is not signed"):
        build_application(copy_of(build_cls_export()[0], tmp_path, "unsigned"))
    app = build_application(signed)
    folder, settings = app.application._bound_deployment.init_args
    assert settings.require_signature == str(keys["key.pub"]) and Path(folder) == signed.resolve()


def test_bench_run_requires_the_signature_in_every_worker(signed, keys, tmp_path, capsys):
    """`bench run --require-signature`: the signed folder is measured (each worker verifies it again before it
    loads); a tampered copy is one line, exit 2, before any worker starts."""
    from .helpers import FAST_ARGS

    key = ["--require-signature", str(keys["key.pub"])]
    assert run_cli(["bench", "run", str(signed), *FAST_ARGS, *key, "-o", str(tmp_path / "rep")]) == 0
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]
    assert {r["format"] for r in rows} == {"pytorch-eager", "onnx"} and all(r["status"] != "failed" for r in rows)
    folder = copy_of(signed, tmp_path, "tampered")
    what = edit_file(folder)
    assert what in one_line_exit_2(capsys, ["bench", "run", str(folder), *FAST_ARGS, *key, "-o",
                                            str(tmp_path / "rep2")])
    assert not (tmp_path / "rep2").exists()

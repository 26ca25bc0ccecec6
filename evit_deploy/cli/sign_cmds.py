"""``evit-deploy sign``, ``evit-deploy verify`` and ``evit-deploy keygen`` (signed export folders; the [sign] extra)."""

from __future__ import annotations

import os

import click

from ..errors import EvitError

REQUIRE_SIGNATURE_HELP = ("Refuse the export unless it is signed by this public key (or a certificate chaining to "
                          "these CA certificates), checked before anything is loaded. Default: the "
                          "EVIT_DEPLOY_REQUIRE_SIGNATURE environment variable.")


def require_signature_option(f):  # noqa: ANN001, ANN201 - a click decorator
    """``--require-signature FILE`` for the commands that load an export."""
    return click.option("--require-signature", type=click.Path(dir_okay=False), metavar="PUBLIC_KEY", default=None,
                        help=REQUIRE_SIGNATURE_HELP)(f)


def password(env: str | None) -> str | None:
    """The password in the environment variable ``env`` (None: no password)."""
    if env is None:
        return None
    value = os.environ.get(env)
    if value is None:
        raise EvitError(f"--password-env {env}: the environment variable {env} is not set")
    return value


@click.command()
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--key", "-k", required=True, type=click.Path(dir_okay=False), metavar="PRIVATE_KEY",
              help="Elliptic-curve private key (PEM; P-256, P-384 or P-521), e.g. from evit-deploy keygen.")
@click.option("--signature", type=click.Path(dir_okay=False),
              help="Where to write the signature (default: EXPORT_DIR/export.sig, which travels with the folder).")
@click.option("--certificate", type=click.Path(dir_okay=False),
              help="Sign with this certificate of the key (PEM); verifiers then trust CA certificates, not the key.")
@click.option("--certificate-chain", multiple=True, type=click.Path(dir_okay=False),
              help="Intermediate certificates to include with --certificate (PEM). Repeatable.")
@click.option("--password-env", metavar="VAR", help="Read the private key's password from this environment variable.")
def sign(export_dir: str, key: str, signature: str | None, certificate: str | None,
         certificate_chain: tuple[str, ...], password_env: str | None) -> None:
    """Sign every file of EXPORT_DIR (export.json included) with OpenSSF model-signing.

    The export is checked first (manifest valid, every artifact matching its sha256, no file export.json does
    not list). Verify with `evit-deploy verify`, or refuse unsigned exports where they load with
    --require-signature / EVIT_DEPLOY_REQUIRE_SIGNATURE.
    """
    from ..signed_exports import sign_export

    if certificate_chain and certificate is None:
        raise click.UsageError("--certificate-chain needs --certificate")
    signed = sign_export(export_dir, key, signature, certificate, certificate_chain, password(password_env))
    click.echo(f"signed {len(signed.files)} files of {export_dir} with {signed.signer}: {signed.signature}")


@click.command()
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--public-key", type=click.Path(dir_okay=False), help="The signer's public key (PEM).")
@click.option("--certificate-chain", type=click.Path(dir_okay=False),
              help="CA certificates (PEM) the signing certificate must chain to (signatures made with --certificate).")
@click.option("--signature", type=click.Path(dir_okay=False), help="The signature (default: EXPORT_DIR/export.sig).")
def verify(export_dir: str, public_key: str | None, certificate_chain: str | None, signature: str | None) -> None:
    """Verify the signature of EXPORT_DIR: every file as signed, none added or missing, then every artifact's
    sha256 against the signed export.json. Exit 2 with one line naming what failed."""
    from ..signed_exports import verify_export
    from ..signing import load_trust

    if (public_key is None) == (certificate_chain is None):
        raise click.UsageError("give exactly one of --public-key and --certificate-chain")
    trust = load_trust(public_key or certificate_chain)
    if (trust.kind == "key") != (public_key is not None):
        option = "--public-key" if public_key else "--certificate-chain"
        raise EvitError(f"{option} {trust.path} holds {'CA certificates' if trust.kind != 'key' else 'a public key'}; "
                        f"use {'--certificate-chain' if public_key else '--public-key'}")
    done = verify_export(export_dir, trust, signature)
    m = done.manifest
    click.echo(f"verified: {len(done.signed.files)} files of {export_dir} ({m.model}, {m.target}) are as signed "
               f"({trust.description})")


@click.command()
@click.option("--private-key", required=True, type=click.Path(dir_okay=False), help="File for the private key (PEM).")
@click.option("--public-key", required=True, type=click.Path(dir_okay=False), help="File for the public key (PEM).")
@click.option("--curve", type=click.Choice(["p256", "p384", "p521"]), default="p256", show_default=True)
@click.option("--password-env", metavar="VAR", help="Encrypt the private key with the password in this variable.")
def keygen(private_key: str, public_key: str, curve: str, password_env: str | None) -> None:
    """Make an elliptic-curve key pair for `evit-deploy sign` (private key mode 0600; never overwrites).

    The same with OpenSSL: `openssl ecparam -name prime256v1 -genkey -noout -out key.pem` and
    `openssl ec -in key.pem -pubout -out key.pub.pem`.
    """
    from ..signing import generate_keys

    private, public = generate_keys(private_key, public_key, curve, password(password_env))
    click.echo(f"wrote {private} (keep it secret) and {public} (give it to verifiers)")

"""`vms export ...`: the signing key and offline verification (registered in vms.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vms.core.cli import fail, load_settings

export_app = typer.Typer(help="Police export packages.", no_args_is_help=True)


@export_app.command("public-key")
def public_key(
    fingerprint: Annotated[
        bool, typer.Option("--fingerprint", help="print the SHA-256 fingerprint instead")
    ] = False,
) -> None:
    """Print the installation's export signing public key (PEM); creates the key on first use."""
    from vms.core import signing
    from vms.core.crypto import SecretBox

    settings = load_settings()
    try:
        key, _ = signing.load_or_create(
            data_dir=settings.data_dir, box=SecretBox(settings.secret_key_bytes())
        )
    except signing.SigningKeyError as exc:
        fail(str(exc))
    if fingerprint:
        typer.echo(key.fingerprint)
    else:
        typer.echo(key.public_pem.decode("ascii"), nl=False)


@export_app.command("verify")
def verify(
    package: Annotated[Path, typer.Argument(help="the export package (.zip)")],
    public_key_file: Annotated[
        Path, typer.Option("--public-key", help="the issuer's public key (PEM)")
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no summary")] = False,
) -> None:
    """Check a package's signatures, every hash and its file list. Works offline: needs only the
    zip and the public key, no database or settings."""
    from vms.export.verify import verify_package

    try:
        pem = public_key_file.read_bytes()
    except OSError as exc:
        fail(f"cannot read the public key {public_key_file}: {exc.strerror}")
    result = verify_package(package, pem)
    if not result.ok:
        fail(f"{package.name}: {result.problem}")
    if not quiet:
        for line in result.summary:
            typer.echo(line)
    typer.echo(
        f"OK: signature valid (key {result.key_fingerprint}), {result.checked_files} files match "
        "their SHA-256, no extra or missing files"
    )

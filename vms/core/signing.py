"""The installation's Ed25519 signing key: export manifests, audit-log checkpoints.

Generated on first use and kept under the data folder, encrypted with the installation key
(`SecretBox`), so a copy of the data folder without `VMS_SECRET_KEY` cannot sign packages. The
public half is published as PEM (SubjectPublicKeyInfo): that is what `openssl pkeyutl -verify
-pubin` and `vms export verify --public-key` read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vms.core.crypto import SecretBox

logger = logging.getLogger(__name__)

KEY_DIR = "keys"
KEY_FILE = "export-signing-key.enc"
ALGORITHM = "Ed25519"


class SigningKeyError(Exception):
    """The stored key cannot be read (wrong installation key, damaged file)."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    @property
    def public_pem(self) -> bytes:
        return public_pem(self.private)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_pem)


def public_pem(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(public_key_pem: bytes) -> str:
    """SHA-256 of the DER public key, hex: what `openssl pkey -pubin -outform DER | sha256sum`
    prints, so a recipient can compare it over the phone."""
    key = serialization.load_pem_public_key(public_key_pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_DIR / KEY_FILE


def load_or_create(*, data_dir: Path, box: SecretBox) -> tuple[SigningKey, bool]:
    """The installation's key, and whether this call created it."""
    path = key_path(data_dir)
    if path.exists():
        return _load(path, box), False
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(box.encrypt(pem))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link() fails if the name exists: of two processes starting at once, exactly one
            # key wins and both then use it.
            os.link(tmp, path)
        except FileExistsError:
            return _load(path, box), False
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("created the export signing key %s", fingerprint(public_pem(private)))
    return SigningKey(private), True


def _load(path: Path, box: SecretBox) -> SigningKey:
    try:
        pem = box.decrypt_bytes(path.read_text().strip())
    except ValueError as exc:
        raise SigningKeyError(
            f"the export signing key {path} cannot be decrypted with this installation's "
            "VMS_SECRET_KEY"
        ) from exc
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 key")
    return SigningKey(key)

"""Secrets at rest (Fernet) and keeping credentials out of URLs, logs and messages."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Encrypts short secrets (camera passwords, the signing key) with the installation key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str | bytes) -> str:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        return self._fernet.encrypt(data).decode("ascii")

    def decrypt(self, token: str) -> str:
        return self.decrypt_bytes(token).decode()

    def decrypt_bytes(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this installation's key") from exc


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def scrub(text: str) -> str:
    """Replace `user:password@` in any URL inside `text` with `***@`."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`rtsp://u:p@host/x` -> (`rtsp://host/x`, "u", "p"); URLs without userinfo pass through."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password


def join_credentials(url: str, username: str | None, password: str | None) -> str:
    """Inverse of split_credentials: the URL a decoder needs. Never log the result."""
    if not username:
        return url
    parts = urlsplit(url)
    userinfo = quote(username, safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit(
        (parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment)
    )

"""Secrets at rest (Fernet) and keeping credentials out of URLs, logs and messages."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

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


# `scheme://userinfo@`: userinfo may hold an unencoded '@', so match up to the last '@' before
# the host part ends.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"<>]*@")
# Query parameters cameras take credentials in (`?user=admin&password=...`, `&token=...`).
QUERY_SECRET_KEYS = frozenset(
    {
        "user", "username", "usr", "login", "account",
        "password", "passwd", "pass", "pwd", "psw", "pw",
        "token", "auth", "authkey", "key", "apikey", "api_key", "secret",
    }
)  # fmt: skip
_QUERY_SECRET = re.compile(
    r"(?i)(?P<key>[?&;](?:" + "|".join(sorted(QUERY_SECRET_KEYS, key=len, reverse=True)) + r")=)"
    r"[^&;#\s'\"<>]*"
)


def scrub(text: str) -> str:
    """`text` with every URL credential replaced: `user:password@` by `***@`, and the values
    of credential-like query parameters (`password=`, `user=`, `token=`...) by `***`."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group('key')}***", text)


def split_query_secrets(url: str) -> tuple[str, list[tuple[str, str]]]:
    """`rtsp://cam/live?ch=1&user=a&password=b` -> (`rtsp://cam/live?ch=1`, [(user, a),
    (password, b)]): credential-like query parameters are kept apart, like userinfo."""
    parts = urlsplit(url)
    if not parts.query:
        return url, []
    kept: list[tuple[str, str]] = []
    secret: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (secret if key.lower() in QUERY_SECRET_KEYS else kept).append((key, value))
    if not secret:
        return url, []
    clean = urlunsplit(parts._replace(query=urlencode(kept)))
    return clean, secret


def join_query_secrets(url: str, pairs: list[tuple[str, str]]) -> str:
    """Inverse of split_query_secrets (the secret parameters go last). Never log the result."""
    if not pairs:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(pairs)) if q)
    return urlunsplit(parts._replace(query=query))


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

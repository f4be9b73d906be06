"""Live-view tickets: short-lived, signed, single-use, for one user, token and camera.

A browser's `<img src=...>` cannot send an Authorization header, so the MJPEG and snapshot URLs
also accept `?ticket=`. A ticket is not a token: it expires within a minute, names the camera and
the API token it was issued under (revoking the token voids it), opens one view (it cannot be
replayed from a log or a browser history), and every use re-checks the user (active, role,
organisation) and the camera's policy. Putting the API token itself into a URL would leave it in
access logs and browser history; the server's access log redacts tickets too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from vms.core.errors import Unauthorized

TTL = dt.timedelta(seconds=60)
_CONTEXT = b"vms live-view ticket v2"


@dataclass(frozen=True)
class Ticket:
    user_id: int
    camera_id: int
    token_id: int
    nonce: str
    expires: int  # epoch seconds


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(
    secret: bytes,
    *,
    user_id: int,
    camera_id: int,
    token_id: int,
    now: dt.datetime,
    ttl: dt.timedelta = TTL,
) -> tuple[str, dt.datetime]:
    expires = now + ttl
    nonce = secrets.token_urlsafe(12)
    body = f"{user_id}:{camera_id}:{token_id}:{int(expires.timestamp())}:{nonce}".encode()
    sig = hmac.new(_key(secret), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(sig)}", expires


def verify(secret: bytes, ticket: str, *, camera_id: int, now: dt.datetime) -> Ticket:
    """What the ticket says; Unauthorized if it is forged, expired or for another camera.
    Whether it was used before is the caller's check (`UsedTickets`)."""
    try:
        body_text, sig_text = ticket.split(".", 1)
        body, sig = _unb64(body_text), _unb64(sig_text)
        expected = hmac.new(_key(secret), body, hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            raise ValueError("bad signature")
        user, camera, token, expires, nonce = body.decode().split(":")
        claims = Ticket(int(user), int(camera), int(token), nonce, int(expires))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthorized("invalid live-view ticket") from exc
    if claims.camera_id != camera_id:
        raise Unauthorized("this ticket is for another camera")
    if now.timestamp() >= claims.expires:
        raise Unauthorized("live-view ticket expired; ask for a new one")
    return claims

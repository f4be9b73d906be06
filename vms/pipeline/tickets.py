"""Live-view tickets: short-lived, signed, for one user and one camera.

A browser's `<img src=...>` cannot send an Authorization header, so the MJPEG and snapshot URLs
also accept `?ticket=`. A ticket is not a token: it expires within a minute, names the camera,
and every use re-checks the user (active, role, organisation) and the camera's policy. Putting
the API token itself into a URL would leave it in access logs and browser history.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

from vms.core.errors import Unauthorized

TTL = dt.timedelta(seconds=60)
_CONTEXT = b"vms live-view ticket v1"


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(
    secret: bytes, *, user_id: int, camera_id: int, now: dt.datetime, ttl: dt.timedelta = TTL
) -> tuple[str, dt.datetime]:
    expires = now + ttl
    body = f"{user_id}:{camera_id}:{int(expires.timestamp())}".encode()
    sig = hmac.new(_key(secret), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(sig)}", expires


def verify(secret: bytes, ticket: str, *, camera_id: int, now: dt.datetime) -> int:
    """The user id the ticket was issued to; Unauthorized if it is forged, expired or for
    another camera."""
    try:
        body_text, sig_text = ticket.split(".", 1)
        body, sig = _unb64(body_text), _unb64(sig_text)
        expected = hmac.new(_key(secret), body, hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            raise ValueError("bad signature")
        user_id, ticket_camera, expires = (int(x) for x in body.decode().split(":"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthorized("invalid live-view ticket") from exc
    if ticket_camera != camera_id:
        raise Unauthorized("this ticket is for another camera")
    if now.timestamp() >= expires:
        raise Unauthorized("live-view ticket expired; ask for a new one")
    return user_id

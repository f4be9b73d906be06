"""Browser sessions: the API token in an HttpOnly cookie, and the CSRF token that goes with it.

The web interface signs in with the same opaque token as any API client (see accounts.login),
but keeps it where page JavaScript cannot read it: an `HttpOnly; SameSite=Strict` cookie. A
cookie is sent by the browser on its own, so every state-changing request that authenticates
with it must also carry `X-CSRF-Token`, an HMAC of the session token under the installation
secret that only pages of this origin know (it is rendered into them). Requests with an
`Authorization: Bearer` header are unaffected: a browser never adds that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from vms.core.errors import DomainError

SESSION_COOKIE = "vms_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CONTEXT = b"vms csrf v1:"


class CsrfRefused(DomainError):
    """A cookie-authenticated write without a matching CSRF token (403)."""

    status_code = 403

    def __init__(self, msg: str) -> None:
        super().__init__(msg=msg, code="csrf")


def csrf_token(secret: bytes, session_token: str) -> str:
    """The CSRF token of a browser session: stable for the session, useless without it."""
    return hmac.new(secret, _CONTEXT + session_token.encode(), hashlib.sha256).hexdigest()


def session_token(request: Request) -> str | None:
    """The API token from the session cookie, if the browser sent one."""
    token = request.cookies.get(SESSION_COOKIE)
    return token or None


def require_csrf(request: Request, *, secret: bytes, token: str) -> None:
    """Refuse a cookie-authenticated unsafe request whose CSRF header does not match."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        raise CsrfRefused(f"missing {CSRF_HEADER} header (required with cookie sign-in)")
    if not hmac.compare_digest(sent, csrf_token(secret, token)):
        raise CsrfRefused(f"{CSRF_HEADER} does not match this session")

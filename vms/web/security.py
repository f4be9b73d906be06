"""Response headers for the web interface: a strict Content-Security-Policy and friends.

The pages load nothing but this origin's own files: no inline script or style (templates
carry no `style=` or `<script>` bodies; data reaches scripts as `application/json` blocks,
which are never executed), no framing. The one exception is the map tile server the police
map may use, allowed for images only and only when configured.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes that belong to the API or its tooling: their headers are the API's business (Swagger
# UI at /docs loads its own assets and would break under this policy).
API_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/metrics", "/health")


def tile_origin(tile_url: str) -> str | None:
    """`https://{s}.tile.example.org/{z}/{x}/{y}.png` -> `https://*.tile.example.org`."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url.replace("{s}", "subdomain"))
    host = parts.hostname or ""
    if "{s}" in tile_url:
        host = host.replace("subdomain", "*", 1)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def content_security_policy(tile_url: str) -> str:
    images = ["'self'", "blob:"]  # blob: the mask preview, fetched with a POST
    origin = tile_origin(tile_url)
    if origin:
        # Leaflet blanks a tile it gives up on with a 1x1 data: GIF (an image, never a script).
        images += ["data:", origin]
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "media-src 'self'",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """Adds the web interface's headers to every response that is not the API's."""

    def __init__(self, app: ASGIApp, *, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

"""The web interface: server-rendered page shells on the JSON API (see vms.web.router).

`install(app)` mounts the pages, the static files and the security headers on the API app, so
one server (and one set of authorisation rules) serves both.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from vms.web.router import HERE, not_found_page, router
from vms.web.security import API_PREFIXES, SecurityHeaders, content_security_policy


def install(app: FastAPI) -> None:
    """Add the web interface to the app (after the API's error handlers are installed)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(
        SecurityHeaders, csp=content_security_policy(app.state.settings.map_tile_url)
    )
    api_handler = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        # A person who mistypes a page address gets a page, not the API's JSON.
        assert isinstance(exc, StarletteHTTPException)
        wants_page = "text/html" in request.headers.get("accept", "")
        if (
            exc.status_code == 404
            and wants_page
            and not request.url.path.startswith((*API_PREFIXES, "/static/"))
        ):
            return await run_in_threadpool(not_found_page, request)
        response = api_handler(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(StarletteHTTPException, http_error)
    api_validation = app.exception_handlers[RequestValidationError]

    async def page_validation(request: Request, exc: Exception) -> Response:
        # /cameras/abc is no page (the id is not a number): 404, like any unknown address.
        if request.method == "GET" and not request.url.path.startswith(API_PREFIXES):
            return await run_in_threadpool(not_found_page, request)
        response = api_validation(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(RequestValidationError, page_validation)

"""Page routes of the web interface, and browser sign-in/sign-out.

Over 500 lines on purpose (barely): the sign-in routes and the page routes share one
renderer (`_render`, `_page`, `_error_page`) and one router that `vms.web.install` mounts; a
split would need a third module for the renderer to save a few dozen lines.

Pages are shells: the server renders the layout, the navigation the user's role is offered and
the labels in their language; the page's script fetches the data from `/api/v1/...` with the
session cookie, so every authorisation decision stays in the API's services. Pages about one
thing (a camera, an export) look it up through the same service getter the API uses, so a
camera of another organisation is a 404 page here exactly as it is a 404 there.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

import vms
from registry import service as registry_service
from vms.core import accounts, browser
from vms.core.auth import Principal, authenticate_token
from vms.core.deps import SessionDep, SettingsDep, client_address
from vms.core.errors import DomainError, TooManyRequests, Unauthorized
from vms.core.schemas import TokenRequest
from vms.export import service as export_service
from vms.pipeline import service as pipeline_service
from vms.web import i18n
from vms.web.pages import BY_NAME, PAGES, PageSpec, home_path, nav_for

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "vms_login_csrf"
LANG_COOKIE = "vms_lang"
HTML = HTMLResponse


def _static(path: str) -> str:
    # The version in the URL: a new release is never served yesterday's cached script.
    return f"/static/{path}?v={vms.__version__}"


templates.env.globals["static"] = _static


def safe_next(value: str | None) -> str:
    """A local path to go back to after signing in; anything else (other hosts) is dropped."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def _session_principal(request: Request, session: SessionDep) -> Principal | None:
    token = browser.session_token(request)
    if token is None:
        return None
    try:
        return authenticate_token(session, token)
    except Unauthorized:
        return None  # expired or revoked: the page sends the user to sign in again


def _render(
    request: Request,
    session: SessionDep,
    template: str,
    *,
    title: str,
    principal: Principal | None,
    status_code: int = 200,
    current: str | None = None,
    script: str | None = None,
    data: dict[str, Any] | None = None,
    **context: Any,
) -> HTMLResponse:
    lang = i18n.negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
    tr = i18n.translator(lang)
    user: dict[str, Any] | None = None
    csrf = ""
    if principal is not None:
        token = browser.session_token(request)
        assert token is not None
        csrf = browser.csrf_token(request.app.state.settings.secret_key_bytes(), token)
        org = accounts.get_organisation(session=session, organisation_id=principal.organisation_id)
        user = {
            "email": principal.email,
            "role": principal.role.value,
            "organisation": org.name if org else "",
        }
    # The pages this user is offered: links to others are not shown (the API decides anyway).
    can = [p.name for p in PAGES if principal is not None and principal.role in p.roles]
    page_data = {
        "lang": lang,
        "role": principal.role.value if principal else None,
        "user_id": principal.user_id if principal else None,
        "organisation_id": principal.organisation_id if principal else None,
        "can": can,
        **(data or {}),
    }
    response = templates.TemplateResponse(
        request,
        template,
        {
            "lang": lang,
            "t": tr,
            "title": tr(title),
            "user": user,
            "csrf": csrf,
            "can": can,
            "nav": [
                {"path": p.path, "title": p.title, "current": p.name == current}
                for p in (nav_for(principal.role) if principal else [])
            ],
            "languages": i18n.LANGUAGES,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            "script": script,
            "messages": i18n.MESSAGES[lang],
            "page_data": page_data,
            **context,
        },
        status_code=status_code,
    )
    # Pages carry the user's name and CSRF token: never cached, never stored.
    response.headers["Cache-Control"] = "no-store"
    return response


def _to_sign_in(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={_quote(here)}", status_code=303)
    if browser.session_token(request) is not None:
        response.delete_cookie(browser.SESSION_COOKIE, path="/")
    return response


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


def _error_page(
    request: Request,
    session: SessionDep,
    principal: Principal | None,
    status_code: int,
    message: str | None = None,
) -> HTMLResponse:
    key = {403: "error.403", 404: "error.404"}.get(status_code, "error.other")
    return _render(
        request,
        session,
        "error.html",
        title=f"{key}.title",
        principal=principal,
        status_code=status_code,
        message_key=f"{key}.body",
        detail=message,
    )


def _page(
    request: Request,
    session: SessionDep,
    spec: PageSpec,
    lookup: Any = None,
    **data: Any,
) -> Response:
    """Render `spec` for the signed-in user: sign-in first, 403 for other roles, and 404 when
    `lookup(principal)` (the API's own getter) says the thing does not exist for them."""
    principal = _session_principal(request, session)
    if principal is None:
        return _to_sign_in(request)
    if principal.role not in spec.roles:
        return _error_page(request, session, principal, 403)
    context: dict[str, Any] = {}
    if lookup is not None:
        try:
            context = lookup(principal)
        except DomainError as exc:
            return _error_page(request, session, principal, exc.status_code, exc.msg)
    data = {**data, **context.pop("data", {})}
    return _render(
        request,
        session,
        spec.template,
        title=spec.title,
        principal=principal,
        current=spec.name,
        script=spec.script,
        data=data,
        page=spec.name,
        tile_url=request.app.state.settings.map_tile_url,
        **context,
    )


# -- sign-in, sign-out, language ------------------------------------------------------------


def _login_page(
    request: Request,
    session: SessionDep,
    *,
    next_path: str,
    email: str = "",
    errors: list[dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = _render(
        request,
        session,
        "login.html",
        title="page.login",
        principal=None,
        status_code=status_code,
        next_path=next_path,
        email=email,
        errors=errors or [],
        login_csrf=nonce,
    )
    # Login CSRF: the form must come from this origin (double submit, SameSite=Strict).
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
        path="/login",
    )
    return response


@router.get("/login", response_class=HTML)
def login_form(
    request: Request, session: SessionDep, next: Annotated[str | None, Query()] = None
) -> Response:
    """The sign-in form (a signed-in user goes straight on)."""
    next_path = safe_next(next)
    if _session_principal(request, session) is not None:
        return RedirectResponse(next_path, status_code=303)
    return _login_page(request, session, next_path=next_path)


@router.post("/login", response_class=HTML)
def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=1000)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    login_csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Exchange email and password for a session (the API's token, in an HttpOnly cookie)."""
    next_path = safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, login_csrf):
        return _login_page(
            request,
            session,
            next_path=next_path,
            email=email,
            errors=[{"code": "csrf", "msg": "login.expired"}],
            status_code=403,
        )
    try:
        body = TokenRequest(email=email, password=password)
    except ValidationError as exc:
        errors = [
            {
                "code": str(e["type"]),
                "field": str(e["loc"][0]) if e["loc"] else "",
                "msg": "login.required" if e["type"] == "string_too_short" else str(e["msg"]),
            }
            for e in exc.errors(include_url=False)
        ]
        return _login_page(
            request, session, next_path=next_path, email=email, errors=errors, status_code=422
        )
    try:
        token, row = accounts.login(
            session=session,
            email=body.email,
            password=body.password,
            ttl_hours=settings.token_ttl_hours,
            client=client_address(request),
            throttle=request.app.state.login_throttle,
        )
    except TooManyRequests as exc:
        page = _login_page(
            request,
            session,
            next_path=next_path,
            email=email,
            errors=[{"code": "too_many_requests", "field": "password", "msg": "login.throttled"}],
            status_code=429,
        )
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    except Unauthorized:
        return _login_page(
            request,
            session,
            next_path=next_path,
            email=email,
            errors=[{"code": "unauthorized", "field": "password", "msg": "login.failed"}],
            status_code=401,
        )
    principal = authenticate_token(session, token)
    target = next_path if next_path != "/" else home_path(principal.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        browser.SESSION_COOKIE,
        token,
        max_age=int(settings.token_ttl_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    logger.info("web sign-in: user %s (token %s)", principal.user_id, row.prefix)
    return response


@router.post("/logout", response_class=HTML)
def logout(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Sign out: the token is revoked (not only forgotten by the browser)."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(browser.SESSION_COOKIE, path="/")
    token = browser.session_token(request)
    principal = _session_principal(request, session)
    if token is None or principal is None:
        return response
    expected = browser.csrf_token(request.app.state.settings.secret_key_bytes(), token)
    if not secrets.compare_digest(expected, csrf):
        # A forged sign-out would only be a nuisance, but it is a state change all the same.
        return _error_page(request, session, principal, 403, "CSRF token missing or wrong")
    accounts.revoke_token(session=session, principal=principal, token=token)
    return response


@router.get("/lang", response_class=HTML)
def set_language(
    set: Annotated[str, Query(max_length=8)] = "",
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Switch the interface language (a preference cookie) and go back."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if set in i18n.LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, set, max_age=365 * 24 * 3600, httponly=True, samesite="lax", path="/"
        )
    return response


@router.get("/", response_class=HTML)
def home(request: Request, session: SessionDep) -> Response:
    """Where each role starts."""
    principal = _session_principal(request, session)
    if principal is None:
        return _to_sign_in(request)
    return RedirectResponse(home_path(principal.role), status_code=303)


# -- pages ------------------------------------------------------------------------------------


@router.get("/cameras", response_class=HTML)
def cameras_page(request: Request, session: SessionDep) -> Response:
    """Facility manager / DPO: cameras with their status, filters and search."""
    return _page(request, session, BY_NAME["cameras"])


@router.get("/cameras/new", response_class=HTML)
def camera_new_page(request: Request, session: SessionDep) -> Response:
    """Register a camera (with ONVIF probing)."""
    return _page(request, session, BY_NAME["camera_new"], camera_id=None)


@router.get("/cameras/import", response_class=HTML)
def camera_import_page(request: Request, session: SessionDep) -> Response:
    """Import cameras from a spreadsheet, with the per-row report."""
    return _page(request, session, BY_NAME["camera_import"])


def _camera_lookup(session: SessionDep, camera_id: int) -> Any:
    def lookup(principal: Principal) -> dict[str, Any]:
        camera = registry_service.get_camera_or_raise(
            session=session, camera_id=camera_id, principal=principal
        )
        return {"camera_name": camera.name, "data": {"camera_id": camera.id}}

    return lookup


@router.get("/cameras/{camera_id}", response_class=HTML)
def camera_edit_page(camera_id: int, request: Request, session: SessionDep) -> Response:
    """Edit a camera."""
    return _page(request, session, BY_NAME["camera_edit"], _camera_lookup(session, camera_id))


@router.get("/cameras/{camera_id}/mask", response_class=HTML)
def mask_editor_page(camera_id: int, request: Request, session: SessionDep) -> Response:
    """The mask-plan editor on the camera's current picture."""
    return _page(request, session, BY_NAME["mask_editor"], _camera_lookup(session, camera_id))


@router.get("/legal-bases", response_class=HTML)
def legal_bases_page(request: Request, session: SessionDep) -> Response:
    """Legal bases: drafts, documents, putting in force."""
    return _page(request, session, BY_NAME["legal_bases"])


@router.get("/compliance", response_class=HTML)
def compliance_page(request: Request, session: SessionDep) -> Response:
    """DPO dashboard: the compliance report and retention allowed vs. actual."""
    return _page(request, session, BY_NAME["compliance"])


@router.get("/register", response_class=HTML)
def register_page(request: Request, session: SessionDep) -> Response:
    """The surveillance register, with CSV export."""
    return _page(request, session, BY_NAME["register"])


@router.get("/retention", response_class=HTML)
def retention_page(request: Request, session: SessionDep) -> Response:
    """Retention report and deletion receipts."""
    return _page(request, session, BY_NAME["retention"])


@router.get("/audit", response_class=HTML)
def audit_page(request: Request, session: SessionDep) -> Response:
    """The audit log with filters, and verification of its hash chain."""
    return _page(request, session, BY_NAME["audit"])


@router.get("/live", response_class=HTML)
def live_page(request: Request, session: SessionDep) -> Response:
    """Operator: a grid of the masked live views."""
    return _page(request, session, BY_NAME["live"])


@router.get("/live/{camera_id}", response_class=HTML)
def live_camera_page(camera_id: int, request: Request, session: SessionDep) -> Response:
    """One camera's masked live view, full screen."""

    def lookup(principal: Principal) -> dict[str, Any]:
        camera = pipeline_service.camera_for(
            session=session,
            principal=principal,
            camera_id=camera_id,
            roles=pipeline_service.LIVE_ROLES,
        )
        return {"camera_name": camera.name, "data": {"camera_id": camera.id}}

    return _page(request, session, BY_NAME["live_camera"], lookup)


@router.get("/recordings", response_class=HTML)
def recordings_page(request: Request, session: SessionDep) -> Response:
    """A camera's recordings on a timeline, with gaps, and playback."""
    return _page(request, session, BY_NAME["recordings"])


@router.get("/search", response_class=HTML)
def search_page(request: Request, session: SessionDep) -> Response:
    """Police: cameras around an incident, and an export request from the results."""
    return _page(request, session, BY_NAME["search"])


@router.get("/exports", response_class=HTML)
def exports_page(request: Request, session: SessionDep) -> Response:
    """Export requests: police follow theirs, DPOs decide."""
    return _page(request, session, BY_NAME["exports"])


@router.get("/exports/{export_id}", response_class=HTML)
def export_detail_page(export_id: int, request: Request, session: SessionDep) -> Response:
    """One export request: status, decision, download and verification."""

    def lookup(principal: Principal) -> dict[str, Any]:
        # Not read_request: the page's own API call is the audited view.
        req = export_service.get_request_or_raise(
            session=session, actor=principal, export_id=export_id
        )
        return {"case_number": req.case_number, "data": {"export_id": req.id}}

    return _page(request, session, BY_NAME["export_detail"], lookup)


@router.get("/verify", response_class=HTML)
def verify_page(request: Request, session: SessionDep) -> Response:
    """How to verify an export package offline, with the public key."""
    return _page(request, session, BY_NAME["verify"])


def not_found_page(request: Request) -> Response:
    """The 404 page for a browser asking for a page that does not exist."""
    factory = request.app.state.sessionmaker
    with factory() as session:
        principal = _session_principal(request, session)
        return _error_page(request, session, principal, 404)

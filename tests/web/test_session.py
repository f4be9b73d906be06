"""Browser sessions without a browser: sign-in into an HttpOnly cookie, the API accepting that
cookie, CSRF refusal of cookie-authenticated writes, sign-out revoking the token, the security
headers, and the language choice."""

from __future__ import annotations

import re

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import Actor, Factory
from vms.core.browser import CSRF_HEADER, SESSION_COOKIE, csrf_token
from vms.core.config import Settings
from vms.core.models import AuditEntry, Role
from vms.web.i18n import negotiate
from vms.web.router import safe_next

PASSWORD = "correct horse battery"


def sign_in(
    client: TestClient, email: str, password: str = PASSWORD, next_path: str = "/"
) -> httpx2.Response:
    form = client.get("/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert nonce, form.text[:500]
    return client.post(
        "/login",
        data={"email": email, "password": password, "login_csrf": nonce[1], "next": next_path},
        follow_redirects=False,
    )


def page_csrf(client: TestClient, path: str = "/verify") -> str:
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', client.get(path).text)
    assert found
    return found[1]


@pytest.fixture
def fm(factory: Factory) -> Actor:
    return factory.user(Role.facility_manager, email="fm-web@example.se")


def test_sign_in_sets_an_httponly_strict_cookie_and_lands_on_the_role_home(
    client: TestClient, fm: Actor, session: Session
) -> None:
    resp = sign_in(client, fm.user.email)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/cameras"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=vms_")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http in tests; https adds it
    # The same audited login as POST /api/v1/auth/token.
    actions = session.query(AuditEntry.action).filter(AuditEntry.actor_id == fm.user.id).all()
    assert ("auth.login",) in actions


def test_sign_in_goes_back_to_a_local_page_only(client: TestClient, fm: Actor) -> None:
    assert sign_in(client, fm.user.email, next_path="/legal-bases").headers["location"] == (
        "/legal-bases"
    )
    client.cookies.clear()
    evil = sign_in(client, fm.user.email, next_path="//evil.example/x")
    assert evil.headers["location"] == "/cameras"
    assert safe_next("https://evil.example") == "/"
    assert safe_next("/\\evil.example") == "/"
    assert safe_next("/audit?action=x") == "/audit?action=x"


def test_sign_in_errors_are_shown_next_to_the_field(client: TestClient, fm: Actor) -> None:
    wrong = sign_in(client, fm.user.email, password="not it")
    assert wrong.status_code == 401
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    assert 'id="login-password-error"' in wrong.text
    assert 'aria-invalid="true"' in wrong.text
    empty = sign_in(client, "", password="x")
    assert empty.status_code == 422
    assert 'id="login-email-error"' in empty.text


def test_sign_in_form_must_come_from_this_site(client: TestClient, fm: Actor) -> None:
    # Login CSRF: a form posted from elsewhere has no matching nonce cookie.
    resp = client.post(
        "/login",
        data={"email": fm.user.email, "password": PASSWORD, "login_csrf": "forged"},
        follow_redirects=False,
    )
    assert resp.status_code == 403
    assert SESSION_COOKIE not in resp.headers.get("set-cookie", "")


def test_the_api_accepts_the_cookie_and_requires_csrf_for_writes(
    client: TestClient, fm: Actor, settings: Settings
) -> None:
    assert sign_in(client, fm.user.email).status_code == 303
    assert client.get("/api/v1/auth/me").json()["email"] == fm.user.email
    for method, path, body in [
        ("POST", "/api/v1/sites", {"name": "Hus B"}),
        ("PATCH", "/api/v1/sites/1", {"name": "x"}),
        ("DELETE", "/api/v1/cameras/1", None),
        ("POST", "/api/v1/auth/revoke", None),
    ]:
        refused = client.request(method, path, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["detail"][0]["code"] == "csrf"
        wrong = client.request(method, path, json=body, headers={CSRF_HEADER: "0" * 64})
        assert wrong.status_code == 403
        assert wrong.json()["detail"][0]["code"] == "csrf"
    token = client.cookies[SESSION_COOKIE]
    csrf = page_csrf(client)
    assert csrf == csrf_token(settings.secret_key_bytes(), token)
    created = client.post("/api/v1/sites", json={"name": "Hus B"}, headers={CSRF_HEADER: csrf})
    assert created.status_code == 201, created.text


def test_bearer_calls_need_no_csrf_and_win_over_the_cookie(
    client: TestClient, fm: Actor, factory: Factory
) -> None:
    other = factory.user(Role.dpo)
    assert sign_in(client, fm.user.email).status_code == 303
    me = client.get("/api/v1/auth/me", headers=other.headers)
    assert me.json()["email"] == other.user.email
    client.cookies.clear()
    created = client.post("/api/v1/sites", json={"name": "Hus C"}, headers=fm.headers)
    assert created.status_code == 201


def test_sign_out_revokes_the_token(client: TestClient, fm: Actor) -> None:
    assert sign_in(client, fm.user.email).status_code == 303
    token = client.cookies[SESSION_COOKIE]
    csrf = page_csrf(client)
    forged = client.post("/logout", data={"csrf": "nope"}, follow_redirects=False)
    assert forged.status_code == 403
    assert client.get("/api/v1/auth/me").status_code == 200
    out = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    # The token is dead, not only forgotten by this browser.
    again = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401
    assert again.json()["detail"][0]["msg"] == "token revoked"
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/cameras", follow_redirects=False).headers["location"].startswith("/login")


def test_api_revoke_works_with_the_cookie(client: TestClient, fm: Actor) -> None:
    assert sign_in(client, fm.user.email).status_code == 303
    resp = client.post("/api/v1/auth/revoke", headers={CSRF_HEADER: page_csrf(client)})
    assert resp.status_code == 204
    assert f'{SESSION_COOKIE}=""' in resp.headers["set-cookie"]
    assert client.get("/api/v1/auth/me").status_code == 401


def test_pages_send_a_strict_csp_and_the_api_keeps_its_headers(
    client: TestClient, fm: Actor
) -> None:
    assert sign_in(client, fm.user.email).status_code == 303
    for path in ("/login", "/cameras", "/static/css/app.css", "/static/js/lib/api.js"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self';" in csp  # no 'unsafe-inline', no other origin
        assert "style-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
    page = client.get("/cameras")
    assert page.headers["cache-control"] == "no-store"
    # No inline script or style in a page: data travels in JSON blocks.
    assert not re.search(r"<script(?![^>]*(\bsrc=|application/json))", page.text)
    assert not re.search(r"\sstyle=", page.text)
    assert "<style" not in page.text
    # The token itself never appears in a page (only the CSRF token derived from it).
    assert client.cookies[SESSION_COOKIE] not in page.text
    api = client.get("/api/v1/auth/me")
    assert "content-security-policy" not in api.headers


def test_the_csp_allows_exactly_the_configured_tile_server(settings: Settings) -> None:
    from vms.web.security import content_security_policy, tile_origin

    assert tile_origin("https://tile.openstreetmap.org/{z}/{x}/{y}.png") == (
        "https://tile.openstreetmap.org"
    )
    assert tile_origin("https://{s}.tiles.example.se:8443/{z}/{x}/{y}.png") == (
        "https://*.tiles.example.se:8443"
    )
    assert "img-src 'self' blob:;" in content_security_policy("")
    assert "img-src 'self' blob: data: https://tile.openstreetmap.org;" in (
        content_security_policy("https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    )
    with pytest.raises(ValueError, match="VMS_MAP_TILE_URL"):
        Settings(map_tile_url="ftp://x/{z}")


def test_anonymous_pages_redirect_and_unknown_pages_are_pages(client: TestClient) -> None:
    resp = client.get("/audit?action=export.*", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/audit%3Faction%3Dexport.%2A"
    missing = client.get("/no-such-page", headers={"accept": "text/html"})
    assert missing.status_code == 404
    assert "<html" in missing.text
    assert client.get("/cameras/not-a-number", follow_redirects=False).status_code == 404
    assert client.get("/lang?set=" + "x" * 50, follow_redirects=False).status_code == 404
    # The API's own 404s (and validation errors) stay JSON.
    bad = client.post("/api/v1/auth/token", json={"email": "x"}, headers={"accept": "text/html"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "email"
    api = client.get("/api/v1/no-such-route", headers={"accept": "text/html"})
    assert api.status_code == 404
    assert api.json()["detail"][0]["code"] == "http_404"


def test_a_role_without_the_page_gets_a_clear_403_page(
    client: TestClient, factory: Factory
) -> None:
    police = factory.user(Role.police)
    assert sign_in(client, police.user.email).status_code == 303
    resp = client.get("/cameras/new")
    assert resp.status_code == 403
    assert "<h1>Inte för din roll</h1>" in resp.text
    assert 'href="/cameras/new"' not in resp.text  # not offered in the navigation either


def test_language_from_the_toggle_then_the_browser(client: TestClient) -> None:
    assert negotiate(None, "en-GB,en;q=0.9,sv;q=0.5") == "en"
    assert negotiate(None, "de-DE,sv;q=0.4,en;q=0.3") == "sv"
    assert negotiate(None, "fr") == "sv"
    assert negotiate("en", "sv") == "en"
    assert negotiate("xx", "en") == "en"
    assert 'lang="en"' in client.get("/login", headers={"accept-language": "en-US"}).text
    switched = client.get("/lang?set=sv&next=/login", follow_redirects=False)
    assert switched.headers["location"] == "/login"
    assert "vms_lang=sv" in switched.headers["set-cookie"]
    assert 'lang="sv"' in client.get("/login", headers={"accept-language": "en-US"}).text
    assert (
        client.get("/lang?set=en&next=https://evil.example", follow_redirects=False).headers[
            "location"
        ]
        == "/"
    )

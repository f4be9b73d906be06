"""Login, tokens, expiry and revocation, with what the audit log keeps of them."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.factories import Factory
from vms.core.models import ApiToken, AuditEntry, Role


def _login(client: TestClient, email: str, password: str) -> tuple[int, dict[str, object]]:
    r = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    return r.status_code, r.json()


def test_login_gives_a_working_token(client: TestClient, factory: Factory) -> None:
    actor = factory.user(Role.operator, email="anna@example.se", password="long-enough-pw")
    status, body = _login(client, "Anna@Example.se", "long-enough-pw")
    assert status == 200
    token = str(body["access_token"])
    assert token.startswith("vms_")
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["id"] == actor.user.id


def test_wrong_password_is_401_and_audited(
    client: TestClient, factory: Factory, session: Session
) -> None:
    factory.user(Role.operator, email="bo@example.se", password="long-enough-pw")
    status, body = _login(client, "bo@example.se", "wrong-password")
    assert status == 401
    assert body == {"detail": [{"code": "unauthorized", "msg": "wrong email or password"}]}
    failed = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "auth.login_failed")
    ).all()
    assert [e.details["email"] for e in failed] == ["bo@example.se"]
    assert "wrong-password" not in str(failed[0].details)


def test_unknown_email_is_the_same_401(client: TestClient) -> None:
    status, body = _login(client, "nobody@example.se", "whatever-pw")
    assert status == 401
    assert body["detail"] == [{"code": "unauthorized", "msg": "wrong email or password"}]


def test_token_is_stored_only_as_a_hash(
    client: TestClient, factory: Factory, session: Session
) -> None:
    factory.user(Role.dpo, email="cia@example.se", password="long-enough-pw")
    _, body = _login(client, "cia@example.se", "long-enough-pw")
    token = str(body["access_token"])
    rows = session.execute(text("SELECT * FROM api_tokens")).all()
    assert rows
    assert all(token not in " ".join(map(str, row)) for row in rows)


def test_expired_token_is_refused(client: TestClient, factory: Factory, session: Session) -> None:
    actor = factory.user(Role.operator)
    row = session.scalars(select(ApiToken).where(ApiToken.user_id == actor.user.id)).one()
    row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    session.flush()
    r = client.get("/api/v1/auth/me", headers=actor.headers)
    assert r.status_code == 401
    assert r.json()["detail"][0]["msg"] == "token expired"


def test_revoked_token_is_refused(client: TestClient, factory: Factory, session: Session) -> None:
    actor = factory.user(Role.facility_manager)
    assert client.post("/api/v1/auth/revoke", headers=actor.headers).status_code == 204
    r = client.get("/api/v1/auth/me", headers=actor.headers)
    assert r.status_code == 401
    assert r.json()["detail"][0]["msg"] == "token revoked"
    assert session.scalar(select(AuditEntry.id).where(AuditEntry.action == "token.revoke"))


def test_deactivated_user_loses_access(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    victim = factory.user(Role.operator)
    r = client.delete(f"/api/v1/users/{victim.user.id}", headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["active"] is False
    assert client.get("/api/v1/auth/me", headers=victim.headers).status_code == 401


def test_malformed_authorization_header(client: TestClient) -> None:
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert r.json()["detail"][0]["msg"] == "invalid token"


def test_dpo_reads_assigned_organisations_only(client: TestClient, factory: Factory) -> None:
    home, assigned, other = factory.org(), factory.org(), factory.org()
    dpo = factory.user(Role.dpo, home, dpo_orgs=[assigned])
    seen = client.get("/api/v1/organisations", headers=dpo.headers).json()
    assert {o["id"] for o in seen["items"]} == {home.id, assigned.id}
    assert client.get(f"/api/v1/organisations/{other.id}", headers=dpo.headers).status_code == 404

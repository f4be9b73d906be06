"""Bad input gets a 4xx naming what is wrong, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories import Factory
from vms.core.models import Role


def test_malformed_json(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    r = client.post(
        "/api/v1/organisations",
        content=b'{"name": "unterminated',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["code"] == "json_invalid"


def test_wrong_type_names_the_field(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    r = client.post(
        "/api/v1/users",
        json={"email": "x@example.se", "organisation_id": "not-a-number", "role": "operator"},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "organisation_id"


def test_unknown_field_is_refused(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    r = client.post(
        "/api/v1/organisations", json={"name": "A", "colour": "blue"}, headers=admin.headers
    )
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"code": "extra_forbidden", "msg": "Extra inputs are not permitted", "field": "colour"}
    ]


def test_bad_enum_lists_choices(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    r = client.post(
        "/api/v1/users",
        json={"email": "x@example.se", "organisation_id": admin.organisation_id, "role": "boss"},
        headers=admin.headers,
    )
    assert r.status_code == 422
    item = r.json()["detail"][0]
    assert item["field"] == "role"
    assert "'admin'" in item["msg"]


def test_oversize_body_is_413(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    limit = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    r = client.post(
        "/api/v1/organisations",
        content=b'{"name": "' + b"a" * (limit + 10) + b'"}',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["detail"][0]["code"] == "request_too_large"


def test_duplicate_is_409_with_field(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    factory.org("Dup AB")
    r = client.post("/api/v1/organisations", json={"name": "Dup AB"}, headers=admin.headers)
    assert r.status_code == 409
    assert r.json()["detail"][0]["field"] == "name"


def test_naive_datetime_query_is_422(client: TestClient, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    r = client.get("/api/v1/audit", params={"since": "2026-01-01T00:00:00"}, headers=admin.headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "since"


def test_unknown_route_is_404_json(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["detail"][0]["code"] == "http_404"


@pytest.mark.parametrize("field", ["active", "role", "password"])
def test_null_for_a_required_user_field_is_422(
    client: TestClient, factory: Factory, field: str
) -> None:
    """Found by the OpenAPI fuzz: `{"active": null}` reached the database as a NOT NULL
    violation (500)."""
    admin = factory.user("admin")
    user = factory.user("operator")
    r = client.patch(f"/api/v1/users/{user.user.id}", headers=admin.headers, json={field: None})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"code": "invalid", "msg": "must not be null", "field": field}]

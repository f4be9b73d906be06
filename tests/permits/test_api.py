"""The legal-basis API: validation and every refusal with its exact message, the status life
cycle, documents, organisation scoping and the audit trail."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Factory
from vms.core.config import Settings
from vms.core.models import AuditEntry

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def assessment(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "assessment",
        "title": "Entré och cykelrum",
        "status": "in_force",
        "purpose": "Förebygga skadegörelse och inbrott i cykelrummet",
        "less_intrusive_measures": "Bättre belysning och lås prövades 2024 utan effekt",
        "covered_area": "Entrén och cykelrummet, inte gatan",
        "active_hours": "dygnet runt",
        "privacy_measures": "maskning av grannfastighetens fönster",
        "decided_by": "Styrelsen, Brf Eken",
        "decided_at": "2025-04-02T10:00:00+02:00",
        "review_by": "2026-04-01",
        "max_retention_hours": 72,
        "live_view_allowed": False,
        "recording_allowed": True,
        **extra,
    }


def errors(resp: Any) -> list[tuple[str | None, str]]:
    return [(e.get("field"), e["msg"]) for e in resp.json()["detail"]]


def test_a_facility_manager_drafts_but_does_not_decide(
    client: TestClient, factory: Factory
) -> None:
    """Separation of duties: whoever runs the cameras may not grant them their own basis."""
    fm = factory.user("facility_manager")
    refused = client.post("/api/v1/legal-bases", headers=fm.headers, json=assessment())
    assert refused.status_code == 403
    assert refused.json()["detail"][0]["msg"] == (
        "putting a legal basis in force is decided by the organisation's DPO or an admin "
        "(a facility manager drafts it)"
    )
    r = client.post("/api/v1/legal-bases", headers=fm.headers, json=assessment(status="draft"))
    assert r.status_code == 201, r.text
    url = f"/api/v1/legal-bases/{r.json()['id']}"
    assert client.patch(url, headers=fm.headers, json={"title": "Utkast 2"}).status_code == 200
    go = client.post(f"{url}/status", headers=fm.headers, json={"status": "in_force"})
    assert go.status_code == 403
    dpo = factory.user("dpo", fm.user.organisation)
    r = client.post(f"{url}/status", headers=dpo.headers, json={"status": "in_force"})
    assert r.status_code == 200, r.text
    # In force: editing and ending it are decisions too.
    assert client.patch(url, headers=fm.headers, json={"title": "x"}).status_code == 403
    ended = client.post(
        f"{url}/status", headers=fm.headers, json={"status": "revoked", "reason": "fel"}
    )
    assert ended.status_code == 403
    # A draft of one's own may be withdrawn.
    other = client.post(
        "/api/v1/legal-bases", headers=fm.headers, json=assessment(status="draft")
    ).json()
    r = client.post(
        f"/api/v1/legal-bases/{other['id']}/status",
        headers=fm.headers,
        json={"status": "revoked", "reason": "ersatt"},
    )
    assert r.status_code == 200, r.text


def test_create_in_force_assessment(client: TestClient, factory: Factory) -> None:
    dpo = factory.user("dpo")
    r = client.post("/api/v1/legal-bases", headers=dpo.headers, json=assessment())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["organisation_id"] == dpo.organisation_id
    assert body["status"] == "in_force"
    assert body["in_force_now"] is True
    assert body["documents"] == []
    got = client.get(f"/api/v1/legal-bases/{body['id']}", headers=dpo.headers).json()
    assert got["title"] == "Entré och cykelrum"


def test_permit_and_not_required(client: TestClient, factory: Factory) -> None:
    dpo = factory.user("dpo")
    permit = {
        "kind": "permit",
        "status": "in_force",
        "title": "IMY-tillstånd parkeringshuset",
        "authority": "IMY",
        "case_number": "DI-2023-1234",
        "decision_date": "2023-06-01",
        "valid_from": "2023-07-01T00:00:00+02:00",
        "valid_until": "2028-07-01T00:00:00+02:00",
        "conditions": "Ingen ljudupptagning",
        "live_view_allowed": True,
        "recording_allowed": True,
    }
    r = client.post("/api/v1/legal-bases", headers=dpo.headers, json=permit)
    assert r.status_code == 201, r.text
    assert r.json()["case_number"] == "DI-2023-1234"
    r = client.post(
        "/api/v1/legal-bases",
        headers=dpo.headers,
        json={
            "kind": "not_required",
            "status": "in_force",
            "title": "Serverrum",
            "not_required_reason": "Platsen är inte allmänt tillgänglig",
            "live_view_allowed": True,
        },
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            assessment(max_retention_hours=168),
            [
                (
                    "retention_justification",
                    "required when max_retention_hours is above 72 (IMY: longer retention needs "
                    "a specific justification); got 168",
                )
            ],
            id="retention above 72 h without justification",
        ),
        pytest.param(
            assessment(max_retention_hours=168, retention_justification="   "),
            [
                (
                    "retention_justification",
                    "required when max_retention_hours is above 72 (IMY: longer retention needs "
                    "a specific justification); got 168",
                )
            ],
            id="blank justification",
        ),
        pytest.param(
            assessment(case_number="DI-1", not_required_reason="x"),
            [
                ("case_number", "only for kind 'permit'"),
                ("not_required_reason", "only for kind 'not_required'"),
            ],
            id="fields of other kinds",
        ),
        pytest.param(
            {"kind": "assessment", "title": "t", "status": "in_force"},
            [
                (f, "required for a basis of kind 'assessment' to be in force")
                for f in (
                    "purpose",
                    "less_intrusive_measures",
                    "covered_area",
                    "decided_by",
                    "decided_at",
                )
            ],
            id="incomplete assessment in force",
        ),
        pytest.param(
            {"kind": "permit", "title": "t", "status": "in_force"},
            [
                (f, "required for a basis of kind 'permit' to be in force")
                for f in ("authority", "case_number", "decision_date")
            ],
            id="incomplete permit in force",
        ),
        pytest.param(
            {"kind": "not_required", "title": "t", "status": "in_force"},
            [("not_required_reason", "required for a basis of kind 'not_required' to be in force")],
            id="not_required without a reason",
        ),
        pytest.param(
            {
                "kind": "permit",
                "title": "t",
                "valid_from": "2025-01-01T00:00:00Z",
                "valid_until": "2025-01-01T00:00:00Z",
            },
            [("valid_until", "must be after valid_from")],
            id="empty validity",
        ),
        pytest.param(
            assessment(decided_at="2025-04-02T10:00:00"),
            [("decided_at", "Input should have timezone info")],
            id="naive time",
        ),
        pytest.param(
            assessment(title="Entré\x00"),
            [(None, "text must not contain NUL characters (at title)")],
            id="NUL character",
        ),
        pytest.param(
            assessment(colour="red"),
            [("colour", "Extra inputs are not permitted")],
            id="unknown field",
        ),
        pytest.param(
            assessment(status="expired"),
            [("status", "Input should be 'draft' or 'in_force'")],
            id="created expired",
        ),
    ],
)
def test_create_refusals(
    client: TestClient, factory: Factory, body: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    dpo = factory.user("dpo")
    r = client.post("/api/v1/legal-bases", headers=dpo.headers, json=body)
    assert r.status_code == 422, r.text
    assert errors(r) == expected


def test_draft_may_be_incomplete_then_goes_in_force(client: TestClient, factory: Factory) -> None:
    dpo = factory.user("dpo")
    r = client.post(
        "/api/v1/legal-bases", headers=dpo.headers, json={"kind": "assessment", "title": "Utkast"}
    )
    assert r.status_code == 201, r.text
    basis_id = r.json()["id"]
    assert r.json()["in_force_now"] is False
    r = client.post(
        f"/api/v1/legal-bases/{basis_id}/status", headers=dpo.headers, json={"status": "in_force"}
    )
    assert r.status_code == 422
    assert errors(r)[0] == (
        "purpose",
        "required for a basis of kind 'assessment' to be in force",
    )
    fill = {k: v for k, v in assessment().items() if k not in ("kind", "title", "status")}
    assert (
        client.patch(f"/api/v1/legal-bases/{basis_id}", headers=dpo.headers, json=fill).status_code
        == 200
    )
    r = client.post(
        f"/api/v1/legal-bases/{basis_id}/status", headers=dpo.headers, json={"status": "in_force"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_force"
    assert r.json()["in_force_now"] is True


def test_status_life_cycle_and_audit(
    client: TestClient, factory: Factory, session: Session
) -> None:
    dpo = factory.user("dpo")
    basis = factory.basis(dpo.user.organisation)
    url = f"/api/v1/legal-bases/{basis.id}/status"
    r = client.post(url, headers=dpo.headers, json={"status": "revoked"})
    assert r.status_code == 422
    assert errors(r) == [("reason", "a reason is required when revoking a legal basis")]
    r = client.post(url, headers=dpo.headers, json={"status": "revoked", "reason": "  "})
    assert errors(r) == [("reason", "a reason is required when revoking a legal basis")]
    r = client.post(
        url, headers=dpo.headers, json={"status": "revoked", "reason": "Kameran flyttad"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "revoked"
    assert body["revoked_reason"] == "Kameran flyttad"
    assert body["revoked_at"] is not None
    assert body["surveillance_ended_at"] is not None
    r = client.post(url, headers=dpo.headers, json={"status": "in_force"})
    assert r.status_code == 409
    assert errors(r) == [
        (
            "status",
            f"legal basis {basis.id} cannot change from revoked to in_force "
            "(allowed from revoked: none)",
        )
    ]
    r = client.patch(f"/api/v1/legal-bases/{basis.id}", headers=dpo.headers, json={"title": "x"})
    assert r.status_code == 409
    assert errors(r) == [
        (
            "status",
            f"legal basis {basis.id} is revoked: it is kept as documentation and can no longer "
            "be changed (create a new basis instead)",
        )
    ]
    entry = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "legal_basis.status", AuditEntry.target_id == str(basis.id)
        )
    ).one()
    assert entry.actor_id == dpo.user.id
    assert entry.details == {"from": "in_force", "to": "revoked", "reason": "Kameran flyttad"}


def test_transition_table(client: TestClient, factory: Factory) -> None:
    dpo = factory.user("dpo")
    draft = factory.basis(dpo.user.organisation, status="draft")
    r = client.post(
        f"/api/v1/legal-bases/{draft.id}/status", headers=dpo.headers, json={"status": "expired"}
    )
    assert r.status_code == 409
    assert errors(r) == [
        (
            "status",
            f"legal basis {draft.id} cannot change from draft to expired "
            "(allowed from draft: in_force, revoked)",
        )
    ]
    live = factory.basis(dpo.user.organisation)
    r = client.post(
        f"/api/v1/legal-bases/{live.id}/status", headers=dpo.headers, json={"status": "expired"}
    )
    assert r.status_code == 200
    assert r.json()["in_force_now"] is False


def test_update_rules(client: TestClient, factory: Factory, session: Session) -> None:
    dpo = factory.user("dpo")
    basis = factory.basis(dpo.user.organisation)
    url = f"/api/v1/legal-bases/{basis.id}"
    r = client.patch(url, headers=dpo.headers, json={"title": None, "recording_allowed": None})
    assert r.status_code == 422
    assert errors(r) == [("title", "must not be null"), ("recording_allowed", "must not be null")]
    r = client.patch(url, headers=dpo.headers, json={"max_retention_hours": 240})
    assert errors(r)[0][0] == "retention_justification"
    r = client.patch(
        url,
        headers=dpo.headers,
        json={"max_retention_hours": 240, "retention_justification": "Skadegörelse upptäcks sent"},
    )
    assert r.status_code == 200, r.text
    # Clearing a field an in-force basis needs is refused like creating it without.
    r = client.patch(url, headers=dpo.headers, json={"covered_area": None})
    assert errors(r) == [
        ("covered_area", "required for a basis of kind 'assessment' to be in force")
    ]
    entry = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "legal_basis.update", AuditEntry.target_id == str(basis.id)
        )
    ).one()
    assert entry.details["fields"] == ["max_retention_hours", "retention_justification"]
    assert entry.details["before"]["max_retention_hours"] == 72
    assert entry.details["after"]["max_retention_hours"] == 240


def test_organisation_scoping(client: TestClient, factory: Factory) -> None:
    home, other, assigned = factory.org(), factory.org(), factory.org()
    fm = factory.user("facility_manager", home)
    dpo = factory.user("dpo", home, dpo_orgs=[assigned])
    admin = factory.user("admin", home)
    body = assessment()
    r = client.post(
        "/api/v1/legal-bases", headers=fm.headers, json={**body, "organisation_id": other.id}
    )
    assert r.status_code == 404
    assert errors(r) == [(None, "organisation not found")]
    # DPOs document assessments for every organisation assigned to them.
    r = client.post(
        "/api/v1/legal-bases", headers=dpo.headers, json={**body, "organisation_id": assigned.id}
    )
    assert r.status_code == 201, r.text
    assert r.json()["organisation_id"] == assigned.id
    r = client.post(
        "/api/v1/legal-bases", headers=dpo.headers, json={**body, "organisation_id": other.id}
    )
    assert r.status_code == 404
    r = client.post(
        "/api/v1/legal-bases", headers=admin.headers, json={**body, "organisation_id": other.id}
    )
    assert r.status_code == 201
    r = client.post(
        "/api/v1/legal-bases", headers=admin.headers, json={**body, "organisation_id": 999_999}
    )
    assert r.status_code == 404
    listing = client.get("/api/v1/legal-bases", headers=dpo.headers).json()
    assert {b["organisation_id"] for b in listing["items"]} == {assigned.id}
    assert (
        client.get(
            "/api/v1/legal-bases", headers=fm.headers, params={"organisation_id": other.id}
        ).status_code
        == 404
    )
    filtered = client.get(
        "/api/v1/legal-bases",
        headers=admin.headers,
        params={"status": "in_force", "kind": "permit"},
    ).json()
    assert filtered["total"] == 0


# --- documents -------------------------------------------------------------------------------


def upload(
    client: TestClient,
    headers: dict[str, str],
    basis_id: int,
    content: bytes,
    name: str = "beslut.pdf",
) -> Any:
    return client.post(
        f"/api/v1/legal-bases/{basis_id}/documents",
        headers=headers,
        files={"file": (name, content, "application/pdf")},
    )


def test_document_upload_and_download(
    client: TestClient, factory: Factory, settings: Settings, session: Session
) -> None:
    fm = factory.user("facility_manager")
    basis = factory.basis(fm.user.organisation)
    r = upload(client, fm.headers, basis.id, PDF, name="../../Beslut åäö.pdf")
    assert r.status_code == 201, r.text
    doc = r.json()
    digest = hashlib.sha256(PDF).hexdigest()
    assert doc["sha256"] == digest
    assert doc["size_bytes"] == len(PDF)
    assert doc["filename"] == "Beslut åäö.pdf"
    stored = settings.data_dir / "documents" / digest[:2] / f"{digest}.pdf"
    assert stored.read_bytes() == PDF
    r = client.get(f"/api/v1/legal-bases/{basis.id}/documents/{doc['id']}", headers=fm.headers)
    assert r.status_code == 200
    assert r.content == PDF
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["x-content-sha256"] == digest
    assert "filename*=UTF-8''Beslut%20%C3%A5%C3%A4%C3%B6.pdf" in r.headers["content-disposition"]
    listed = client.get(f"/api/v1/legal-bases/{basis.id}", headers=fm.headers).json()
    assert [d["id"] for d in listed["documents"]] == [doc["id"]]
    actions = set(
        session.scalars(select(AuditEntry.action).where(AuditEntry.target_id == str(basis.id)))
    )
    assert {"legal_basis.document.upload", "legal_basis.document.download"} <= actions


@pytest.mark.parametrize(
    ("content", "code", "msg"),
    [
        (b"<html>not a pdf</html>", 422, "document is not a PDF (it must start with %PDF-)"),
        (b"", 422, "document is empty"),
        (b"%PDF-" + b"0" * (10 * 1024 * 1024), 422, "document larger than 10485760 bytes"),
    ],
    ids=["not a pdf", "empty", "too large"],
)
def test_document_refusals(
    client: TestClient, factory: Factory, content: bytes, code: int, msg: str, settings: Settings
) -> None:
    fm = factory.user("facility_manager")
    basis = factory.basis(fm.user.organisation)
    r = upload(client, fm.headers, basis.id, content)
    assert r.status_code == code
    assert errors(r) == [("file", msg)]
    assert not (settings.data_dir / "documents").exists() or not any(
        p.is_file() for p in (settings.data_dir / "documents").rglob("*")
    )


def test_document_tampered_on_disk_is_refused(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    fm = factory.user("facility_manager")
    basis = factory.basis(fm.user.organisation)
    doc = upload(client, fm.headers, basis.id, PDF).json()
    path: Path = settings.data_dir / "documents" / doc["sha256"][:2] / f"{doc['sha256']}.pdf"
    path.write_bytes(PDF + b"% changed\n")
    r = client.get(f"/api/v1/legal-bases/{basis.id}/documents/{doc['id']}", headers=fm.headers)
    assert r.status_code == 409
    assert errors(r) == [
        (
            "document_id",
            f"document {doc['id']} does not match its recorded SHA-256: it was changed in storage",
        )
    ]


def test_document_of_another_basis_is_not_found(client: TestClient, factory: Factory) -> None:
    fm = factory.user("facility_manager")
    a = factory.basis(fm.user.organisation)
    b = factory.basis(fm.user.organisation)
    doc = upload(client, fm.headers, a.id, PDF).json()
    r = client.get(f"/api/v1/legal-bases/{b.id}/documents/{doc['id']}", headers=fm.headers)
    assert r.status_code == 404
    assert errors(r) == [("document_id", "document not found")]

"""The audit chain: every write leaves an entry; editing or deleting any row is detected."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.factories import Factory
from vms.core import audit
from vms.core.db import make_engine, make_sessionmaker, session_scope
from vms.core.models import AuditEntry, Role


def test_api_writes_are_audited_with_actor(
    client: TestClient, factory: Factory, session: Session
) -> None:
    admin = factory.user(Role.admin)
    r = client.post("/api/v1/organisations", json={"name": "Göteborgs Stad"}, headers=admin.headers)
    assert r.status_code == 201
    entry = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "organisation.create")
        .order_by(AuditEntry.seq.desc())
    ).first()
    assert entry is not None
    assert entry.actor_id == admin.user.id
    assert entry.target_id == str(r.json()["id"])
    assert entry.details == {"name": "Göteborgs Stad"}


def test_chain_verifies_and_detects_edit_and_delete(session: Session, factory: Factory) -> None:
    for i in range(5):
        factory.org(f"Chain {i}")
    assert audit.verify_chain(session).ok
    third = session.scalars(select(AuditEntry).order_by(AuditEntry.seq).offset(2)).first()
    assert third is not None
    session.execute(
        text("UPDATE audit_log SET details = :d WHERE id = :id"),
        {"d": '{"name": "Forged"}', "id": third.id},
    )
    session.expire_all()
    report = audit.verify_chain(session)
    assert not report.ok
    assert report.first_bad_seq == third.seq
    assert "was modified" in (report.problem or "")


def test_deleted_row_is_named(session: Session, factory: Factory) -> None:
    for i in range(4):
        factory.org(f"Del {i}")
    second = session.scalars(select(AuditEntry).order_by(AuditEntry.seq).offset(1)).first()
    assert second is not None
    second_seq = second.seq
    session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": second.id})
    session.expire_all()
    report = audit.verify_chain(session)
    assert not report.ok
    assert report.first_bad_seq == second_seq
    assert "deleted" in (report.problem or "")


def _vms(args: list[str], db_url: str, data_dir: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VMS_DATABASE_URL": db_url,
        "VMS_DATA_DIR": data_dir,
        "VMS_PROFILE": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "vms.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_verify_names_the_tampered_entry(isolated_db_url: str, tmp_path: object) -> None:
    data_dir = str(tmp_path)
    assert _vms(["orgs", "create", "Bostadsbolaget"], isolated_db_url, data_dir).returncode == 0
    r = _vms(
        ["users", "create", "--org", "Bostadsbolaget", "--role", "dpo", "--email", "d@x.se"],
        isolated_db_url,
        data_dir,
    )
    assert r.returncode == 0, r.stderr
    ok = _vms(["audit", "verify"], isolated_db_url, data_dir)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain OK: 3 entries" in ok.stdout

    engine = make_engine(isolated_db_url)
    with session_scope(make_sessionmaker(engine)) as s:
        target = s.scalars(select(AuditEntry).where(AuditEntry.action == "user.create")).one()
        seq = target.seq
        s.execute(
            text("UPDATE audit_log SET actor_email = 'someone-else@x.se' WHERE id = :id"),
            {"id": target.id},
        )
    engine.dispose()
    bad = _vms(["audit", "verify"], isolated_db_url, data_dir)
    assert bad.returncode == 1
    assert f"entry seq {seq}" in bad.stderr
    assert "was modified" in bad.stderr


def test_deleting_the_newest_entries_is_caught_by_an_anchored_head(
    isolated_db_url: str, tmp_path: object
) -> None:
    """A chain cut short still verifies on its own; against a head signed earlier (kept with
    the DPO's reports) it does not."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization

    data_dir = str(tmp_path)
    for name in ("Bostadsbolaget", "Skolförvaltningen", "Trafikkontoret"):
        assert _vms(["orgs", "create", name], isolated_db_url, data_dir).returncode == 0
    head = _vms(["audit", "head", "--json"], isolated_db_url, data_dir)
    assert head.returncode == 0, head.stderr
    anchor = json.loads(head.stdout)
    pem = _vms(["export", "public-key"], isolated_db_url, data_dir).stdout.encode()
    key = serialization.load_pem_public_key(pem)
    # Anyone with the public key can check the anchor offline (Ed25519 over the statement).
    key.verify(base64.b64decode(anchor["signature"]), anchor["statement"].encode())  # type: ignore[call-arg, union-attr]
    expect = f"{anchor['seq']}:{anchor['hash']}"
    assert (
        _vms(["audit", "verify", "--expect-head", expect], isolated_db_url, data_dir).returncode
        == 0
    )

    engine = make_engine(isolated_db_url)
    with session_scope(make_sessionmaker(engine)) as s:
        s.execute(text("DELETE FROM audit_log WHERE seq >= :seq"), {"seq": anchor["seq"] - 1})
    engine.dispose()
    plain = _vms(["audit", "verify"], isolated_db_url, data_dir)
    assert plain.returncode == 0, "a truncated chain verifies on its own"
    cut = _vms(["audit", "verify", "--expect-head", expect], isolated_db_url, data_dir)
    assert cut.returncode == 1
    assert f"the anchored entry seq {anchor['seq']} is gone" in cut.stderr
    bad = _vms(["audit", "verify", "--expect-head", "12:nothex"], isolated_db_url, data_dir)
    assert bad.returncode == 1
    assert "--expect-head must be SEQ:HASH" in bad.stderr


def test_the_api_signs_the_head_and_checks_it(client: TestClient, factory: Factory) -> None:
    admin = factory.user("admin")
    dpo = factory.user("dpo")
    r = client.get("/api/v1/audit/head", headers=dpo.headers)
    assert r.status_code == 200, r.text
    head = r.json()
    assert head["statement"].startswith("vms audit log head\n")
    ok = client.get(
        "/api/v1/audit/verify",
        headers=admin.headers,
        params={"expect_seq": head["seq"], "expect_hash": head["hash"]},
    ).json()
    assert ok["ok"] is True
    wrong = client.get(
        "/api/v1/audit/verify",
        headers=admin.headers,
        params={"expect_seq": head["seq"], "expect_hash": "0" * 64},
    ).json()
    assert wrong["ok"] is False
    assert "rewritten" in wrong["problem"]
    half = client.get("/api/v1/audit/verify", headers=admin.headers, params={"expect_seq": 3})
    assert half.status_code == 422

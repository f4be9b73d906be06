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

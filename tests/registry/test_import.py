"""CSV import: all or nothing, every bad row reported with row, column and reason; the CLI does
the same."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from registry.importer import COLUMNS, parse_schedule_text
from registry.models import Camera, Site
from tests.conftest import TEST_KEY
from tests.factories import Actor, Factory
from vms.cli import app
from vms.core.config import Settings
from vms.core.db import make_engine, make_sessionmaker, session_scope
from vms.core.models import AuditEntry, Organisation

HEADER = [
    "name",
    "site",
    "owner_contact_name",
    "owner_contact_email",
    "address",
    "lat",
    "lon",
    "purpose",
    "purpose_category",
    "mode",
    "retention_hours",
    "legal_basis_id",
    "source_kind",
    "source_url",
    "source_username",
    "source_password",
    "schedule",
    "signage_posted",
    "signage_text",
    "status",
]


def rows(n: int, basis_id: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out.append(
            {
                "name": f"Kamera {i}",
                "site": f"Hus {i % 7}",
                "owner_contact_name": "Fastighetsförvaltningen",
                "owner_contact_email": "fastighet@kommun.se",
                "address": f"Storgatan {i}",
                "lat": f"{59 + i / 10000:.5f}",
                "lon": f"{18 + i / 10000:.5f}",
                "purpose": "Förebygga skadegörelse",
                "purpose_category": "property_protection",
                "mode": "live_and_recording",
                "retention_hours": "48",
                "legal_basis_id": str(basis_id),
                "source_kind": "rtsp",
                "source_url": f"rtsp://10.0.{i // 250}.{i % 250}:554/stream",
                "source_username": "viewer",
                "source_password": f"pw-{i}",
                "schedule": "mon-fri 06:00-22:00; sat,sun 08:00-20:00",
                "signage_posted": "ja",
                "signage_text": "Kamerabevakning",
                "status": "active",
            }
        )
    return out


def to_csv(data: list[dict[str, str]], delimiter: str = ",", header: list[str] = HEADER) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, delimiter=delimiter, lineterminator="\n")
    w.writeheader()
    w.writerows(data)
    return buf.getvalue().encode()


def post(client: TestClient, actor: Actor, content: bytes, **params: Any) -> Any:
    return client.post(
        "/api/v1/cameras/import",
        headers=actor.headers,
        params=params,
        files={"file": ("register.csv", content, "text/csv")},
    )


def count(session: Session, org: Organisation) -> int:
    return (
        session.scalar(select(func.count(Camera.id)).where(Camera.organisation_id == org.id)) or 0
    )


def test_thousand_rows_three_bad_then_fixed(
    client: TestClient, factory: Factory, session: Session, record_property: Any
) -> None:
    fm = factory.user("facility_manager")
    org = fm.user.organisation
    basis = factory.basis(org)
    data = rows(1000, basis.id)
    # Spreadsheet rows (header = row 1): data[i] is row i + 2.
    data[98]["lat"] = "north"  # row 100
    data[498]["mode"] = "always"  # row 500
    data[997]["retention_hours"] = "100"  # row 999: more than the basis allows
    started = time.perf_counter()
    r = post(client, fm, to_csv(data))
    refused_s = time.perf_counter() - started
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {
            "code": "invalid_row",
            "msg": "row 100, column lat: Input should be a valid number, unable to parse string "
            "as a number",
            "field": "rows.100.lat",
        },
        {
            "code": "invalid_row",
            "msg": "row 500, column mode: Input should be 'live', 'recording' or "
            "'live_and_recording'",
            "field": "rows.500.mode",
        },
        {
            "code": "invalid_row",
            "msg": f"row 999, column retention_hours: retention_hours 100 exceeds the 72 hours "
            f"allowed by legal basis {basis.id}",
            "field": "rows.999.retention_hours",
        },
    ]
    assert count(session, org) == 0
    assert session.scalar(select(func.count(Site.id)).where(Site.organisation_id == org.id)) == 0

    data[98]["lat"] = "59.1"
    data[498]["mode"] = "recording"
    data[997]["retention_hours"] = "72"
    started = time.perf_counter()
    r = post(client, fm, to_csv(data))
    created_s = time.perf_counter() - started
    assert r.status_code == 200, r.text[:500]
    result = r.json()
    assert result["created"] == 1000
    assert result["sites_created"] == 7
    assert len(result["camera_ids"]) == 1000
    assert count(session, org) == 1000
    first = client.get(f"/api/v1/cameras/{result['camera_ids'][0]}", headers=fm.headers).json()
    assert first["schedule"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00", "end": "22:00"},
        {"days": ["sat", "sun"], "start": "08:00", "end": "20:00"},
    ]
    assert first["signage"] == {"posted": True, "text": "Kamerabevakning"}
    assert first["source"]["has_credentials"] is True
    assert first["permit_status"] == "ok"
    audits = session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.action == "camera.create", AuditEntry.organisation_id == org.id
        )
    )
    assert audits == 1000
    record_property("import_refused_s", round(refused_s, 3))
    record_property("import_created_s", round(created_s, 3))
    print(
        f"\n1000-row import: refused (3 bad rows) in {refused_s:.2f} s, "
        f"created in {created_s:.2f} s"
    )


def test_semicolons_decimal_commas_and_bom(
    client: TestClient, factory: Factory, session: Session
) -> None:
    fm = factory.user("facility_manager")
    data = rows(2, factory.basis(fm.user.organisation).id)
    data[0]["lat"] = "59,3293"
    data[0]["lon"] = "18,0686"
    data[1]["signage_posted"] = "nej"
    data[1]["schedule"] = ""
    content = "\ufeff".encode() + to_csv(data, delimiter=";")
    r = post(client, fm, content)
    assert r.status_code == 200, r.text
    a, b = (
        client.get(f"/api/v1/cameras/{i}", headers=fm.headers).json()
        for i in r.json()["camera_ids"]
    )
    assert a["location"]["lat"] == pytest.approx(59.3293)
    assert b["signage"]["posted"] is False
    assert b["schedule"] == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda h, d: ([*h, "colour"], [{**r, "colour": "red"} for r in d]),
            [("rows.1.colour", "row 1, column colour: unknown column")],
            id="unknown column",
        ),
        pytest.param(
            lambda h, d: (
                [c for c in h if c != "mode"],
                [{k: v for k, v in r.items() if k != "mode"} for r in d],
            ),
            [("rows.1.mode", "row 1, column mode: required column is missing")],
            id="missing column",
        ),
        pytest.param(
            lambda h, d: (h, [{**d[0], "name": ""}, d[1]]),
            [("rows.2.name", "row 2, column name: required")],
            id="empty required cell",
        ),
        pytest.param(
            lambda h, d: (h, [d[0], {**d[1], "schedule": "weekdays 7-18"}]),
            [
                (
                    "rows.3.schedule",
                    "row 3, column schedule: 'weekdays 7-18' is not 'DAYS HH:MM-HH:MM' "
                    "(e.g. mon-fri 07:00-18:00)",
                )
            ],
            id="schedule syntax",
        ),
        pytest.param(
            lambda h, d: (h, [d[0], {**d[1], "schedule": "fri-mon 07:00-18:00"}]),
            [("rows.3.schedule", "row 3, column schedule: day range 'fri-mon' runs backwards")],
            id="schedule range",
        ),
        pytest.param(
            lambda h, d: (h, [d[0], {**d[1], "schedule": "mon 07:00-25:00"}]),
            [
                (
                    "rows.3.schedule",
                    "row 3, column schedule: must be a time HH:MM between 00:00 and 23:59",
                )
            ],
            id="schedule time",
        ),
        pytest.param(
            lambda h, d: (h, [{**d[0], "source_kind": "onvif"}, d[1]]),
            [
                ("rows.2.source_host", "row 2, column source_host: required"),
                ("rows.2.source_url", "row 2, column source_url: not used with source_kind onvif"),
            ],
            id="columns of another source kind",
        ),
        pytest.param(
            lambda h, d: (h, [{**d[0], "source_url": "http://x/y"}, d[1]]),
            [("rows.2.source_url", "row 2, column source_url: must be an rtsp:// or rtsps:// URL")],
            id="bad url",
        ),
        pytest.param(
            lambda h, d: (h, [{**d[0], "legal_basis_id": "999999"}, d[1]]),
            [
                (
                    "rows.2.legal_basis_id",
                    "row 2, column legal_basis_id: legal basis 999999 not found",
                )
            ],
            id="unknown basis",
        ),
        pytest.param(
            lambda h, d: (h, [{**d[0], "owner_contact_email": "nope", "lat": "95"}, d[1]]),
            [
                ("rows.2.lat", "row 2, column lat: Input should be less than or equal to 90"),
                (
                    "rows.2.owner_contact_email",
                    "row 2, column owner_contact_email: value is not a valid email address: An "
                    "email address must have an @-sign.",
                ),
            ],
            id="two bad cells in one row",
        ),
        pytest.param(
            lambda h, d: (h, [{**d[0], "lat": ""}, d[1]]),
            [("rows.2.lat", "row 2, column lat: lat and lon must be given together")],
            id="lat without lon",
        ),
    ],
)
def test_bad_files(
    client: TestClient,
    factory: Factory,
    session: Session,
    mutate: Any,
    expected: list[tuple[str, str]],
) -> None:
    fm = factory.user("facility_manager")
    header, data = mutate(HEADER, rows(2, factory.basis(fm.user.organisation).id))
    r = post(client, fm, to_csv(data, header=header))
    assert r.status_code == 422, r.text
    assert [(e["field"], e["msg"]) for e in r.json()["detail"]] == expected
    assert count(session, fm.user.organisation) == 0


@pytest.mark.parametrize(
    ("content", "msg"),
    [
        (b"", "row 1: the file is empty"),
        (b"name,purpose\n\xff\xfe\n", "row 1: the file is not UTF-8 (save it as 'CSV UTF-8')"),
    ],
)
def test_unreadable_files(client: TestClient, factory: Factory, content: bytes, msg: str) -> None:
    fm = factory.user("facility_manager")
    r = post(client, fm, content)
    assert r.status_code == 422
    assert [e["msg"] for e in r.json()["detail"]] == [msg]


def test_ragged_row_and_blank_rows(client: TestClient, factory: Factory) -> None:
    fm = factory.user("facility_manager")
    good = to_csv(rows(1, factory.basis(fm.user.organisation).id)).decode()
    r = post(client, fm, (good + "\n,,,\nonly,two\n").encode())
    assert r.status_code == 422
    assert [e["msg"] for e in r.json()["detail"]] == [
        f"row 5: has 2 cells, the header has {len(HEADER)}"
    ]
    r = post(client, fm, (good + "\n" + "," * (len(HEADER) - 1) + "\n").encode())
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1


def test_dry_run_creates_nothing(client: TestClient, factory: Factory, session: Session) -> None:
    fm = factory.user("facility_manager")
    r = post(client, fm, to_csv(rows(3, factory.basis(fm.user.organisation).id)), dry_run="true")
    assert r.status_code == 200
    assert r.json() == {
        "dry_run": True,
        "rows": 3,
        "created": 0,
        "sites_created": 0,
        "camera_ids": [],
    }
    assert count(session, fm.user.organisation) == 0


def test_existing_sites_are_reused(client: TestClient, factory: Factory, session: Session) -> None:
    fm = factory.user("facility_manager")
    org = fm.user.organisation
    site = factory.site(org, name="Hus 0")
    r = post(client, fm, to_csv(rows(1, factory.basis(org).id)))
    assert r.json()["sites_created"] == 0
    camera = session.get(Camera, r.json()["camera_ids"][0])
    assert camera is not None
    assert camera.site_id == site.id


def test_import_into_another_organisation(
    client: TestClient, factory: Factory, session: Session
) -> None:
    fm = factory.user("facility_manager")
    other = factory.org()
    r = post(client, fm, to_csv(rows(1, factory.basis(other).id)), organisation_id=other.id)
    assert r.status_code == 404
    admin = factory.user("admin")
    r = post(client, admin, to_csv(rows(2, factory.basis(other).id)), organisation_id=other.id)
    assert r.status_code == 200, r.text
    ids = r.json()["camera_ids"]
    assert len(ids) == 2
    # Into the organisation named, not the admin's own, and audited there.
    for camera_id in ids:
        camera = session.get(Camera, camera_id)
        assert camera is not None
        assert camera.organisation_id == other.id
    entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "camera.import")).all()
    assert [(e.organisation_id, e.actor_id, e.details["created"]) for e in entries] == [
        (other.id, admin.user.id, 2)
    ]


def test_schedule_text() -> None:
    assert parse_schedule_text("Mon-Wed,fri 7:00-18:00 ; sun 22:00-06:00") == [
        {"days": ["mon", "tue", "wed", "fri"], "start": "07:00", "end": "18:00"},
        {"days": ["sun"], "start": "22:00", "end": "06:00"},
    ]
    with pytest.raises(ValueError, match="unknown day"):
        parse_schedule_text("funday 07:00-08:00")


def test_every_column_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "registry.md").read_text()
    for column in COLUMNS:
        assert f"`{column}`" in doc, column


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def vms(isolated_db_url: str, tmp_path: Path) -> Any:
    """The real `vms` app, run in-process (a subprocess per call costs seconds of imports)."""
    env = {
        "VMS_DATABASE_URL": isolated_db_url,
        "VMS_DATA_DIR": str(tmp_path),
        "VMS_PROFILE": "test",
        "VMS_SECRET_KEY": TEST_KEY,
    }

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env=env)

    return run


def test_cli_import(vms: Any, isolated_db_url: str, tmp_path: Path) -> None:
    """Bad rows: one `error:` line each on stderr, exit 1, nothing created; fixed: all created."""
    assert vms("orgs", "create", "Kommunen").exit_code == 0
    engine = make_engine(isolated_db_url)
    try:
        data = rows(20, basis_id=0)
        for row in data:
            row["legal_basis_id"] = ""
        data[4]["purpose_category"] = "fun"
        data[9]["source_password"] = "Cli-S3cret"
        data[9]["source_url"] = "rtsp://u:p@10.0.0.1/x"
        path = tmp_path / "register.csv"
        path.write_bytes(to_csv(data))
        r = vms("registry", "import", str(path), "--org", "Kommunen")
        assert r.exit_code == 1
        assert r.stderr.splitlines() == [
            "error: row 6, column purpose_category: Input should be 'crime_prevention', "
            "'property_protection', 'traffic_management', 'care_supervision', 'safety' or 'other'",
            "error: row 11, column source_url: give credentials either in the URL or as "
            "username/password, not both",
            "error: 2 row(s) have errors; nothing was imported",
        ]
        assert "Cli-S3cret" not in r.stdout + r.stderr
        with session_scope(make_sessionmaker(engine)) as s:
            assert s.scalar(select(func.count(Camera.id))) == 0
        data[4]["purpose_category"] = "safety"
        data[9]["source_url"] = "rtsp://10.0.0.1/x"
        path.write_bytes(to_csv(data))
        r = vms("registry", "import", str(path), "--org", "Kommunen", "--dry-run")
        assert r.exit_code == 0, r.stderr
        assert r.stdout.startswith("20 rows OK (dry run: nothing imported)")
        r = vms("registry", "import", str(path), "--org", "Kommunen")
        assert r.exit_code == 0, r.stderr
        assert r.stdout.startswith("imported 20 cameras (7 new sites) into 'Kommunen'")
        with session_scope(make_sessionmaker(engine)) as s:
            assert s.scalar(select(func.count(Camera.id))) == 20
        r = vms("registry", "import", str(tmp_path / "missing.csv"), "--org", "Kommunen")
        assert r.exit_code == 1
        assert r.stderr.startswith("error: cannot read ")
        r = vms("registry", "import", str(path), "--org", "Nobody")
        assert r.stderr.strip() == (
            "error: no organisation named 'Nobody' (create it with: vms orgs create 'Nobody')"
        )
    finally:
        engine.dispose()


def test_a_dry_run_is_no_file_existence_oracle(
    client: TestClient, factory: Factory, settings: Settings
) -> None:
    """File paths outside the sample/import roots get one answer whether the file exists or
    not: a dry-run import cannot be used to map the server's disk (or find recordings)."""
    fm = factory.user("facility_manager")
    recording = settings.data_dir / "recordings" / "7" / "2025" / "01" / "01" / "00" / "5.mp4"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"\x00")
    paths = [recording, recording.with_name("6.mp4"), Path("/etc/passwd"), Path("/etc/nope")]
    data = [
        {**row, "source_kind": "file", "source_url": "", "source_username": "",
         "source_password": "", "source_path": str(path)}
        for row, path in zip(rows(len(paths), factory.basis(fm.user.organisation).id), paths,
                             strict=True)
    ]  # fmt: skip
    r = post(client, fm, to_csv(data, header=[*HEADER, "source_path"]), dry_run="true")
    assert r.status_code == 422, r.text
    messages = [e["msg"] for e in r.json()["detail"]]
    assert messages == [
        f"row {n}, column source_path: must be inside the sample-media or import directory"
        for n in range(2, 2 + len(paths))
    ]

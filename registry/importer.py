"""Import an existing spreadsheet register (CSV). All or nothing: every row is checked first,
and one bad row means nothing is created; the report names every bad row, column and reason.

Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from permits import service as permit_service
from permits.policy import DAYS
from registry import columns, service, sites
from registry.schemas import CameraCreate, ImportResult, SiteCreate
from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.crypto import SecretBox
from vms.core.errors import ErrorItem, InvalidInput

logger = logging.getLogger(__name__)

MAX_ROWS = 50_000

# Column -> what goes in it. The order is the order of the documentation and the template.
COLUMNS: dict[str, str] = {
    "name": "camera name (required)",
    "site": "site name; created in the organisation if it does not exist",
    "owner_contact_name": "contact person",
    "owner_contact_email": "contact e-mail",
    "owner_contact_phone": "contact phone",
    "address": "street address of the camera",
    "lat": "latitude, WGS84 decimal degrees (59.3293; a decimal comma is accepted)",
    "lon": "longitude, WGS84 decimal degrees",
    "mount_height_m": "mounting height in metres",
    "direction_deg": "compass direction the camera faces, 0-359 (0 = north)",
    "purpose": "purpose of the surveillance, free text (required)",
    "purpose_category": "crime_prevention | property_protection | traffic_management | "
    "care_supervision | safety | other (required)",
    "mode": "live | recording | live_and_recording (required)",
    "retention_hours": "hours footage is kept (required; may not exceed the legal basis)",
    "legal_basis_id": "id of a legal basis of the organisation (GET /api/v1/legal-bases)",
    "source_kind": "rtsp | onvif | file (required)",
    "source_url": "rtsp: rtsp://host:554/path (user:password@ in it is split off and encrypted)",
    "source_host": "onvif: host name or IP",
    "source_port": "onvif: port (default 80)",
    "source_username": "rtsp/onvif: user name (encrypted at rest)",
    "source_password": "rtsp/onvif: password (encrypted at rest, never shown again)",
    "source_profile_token": "onvif: media profile token recorded (default: the "
    "highest-resolution H.264 profile)",
    "source_live_profile_token": "onvif: profile for live view, e.g. the substream (default: "
    "the recorded one)",
    "source_path": "file: path of a video file under the sample-media or import directory",
    "timezone": "IANA time zone of the schedule (default Europe/Stockholm)",
    "schedule": "when surveillance is active, e.g. 'mon-fri 07:00-18:00; sat,sun 10:00-14:00' "
    "(empty = always)",
    "signage_posted": "yes/no (ja/nej, true/false, 1/0): are signs up",
    "signage_text": "text of the signs",
    "status": "active | paused (default active)",
}
REQUIRED = ("name", "purpose", "purpose_category", "mode", "retention_hours", "source_kind")
_FLOATS = ("lat", "lon", "mount_height_m", "direction_deg")
_BOOL_WORDS = {"ja": "true", "nej": "false", "j": "true", "n": "false", "x": "true"}
# API field path (as in error items) -> CSV column.
_FIELD_COLUMN = {
    "owner_contact.name": "owner_contact_name",
    "owner_contact.email": "owner_contact_email",
    "owner_contact.phone": "owner_contact_phone",
    "owner_contact": "owner_contact_name",
    "location.address": "address",
    "location.lat": "lat",
    "location.lon": "lon",
    "location.mount_height_m": "mount_height_m",
    "location.direction_deg": "direction_deg",
    "location": "lat",
    "signage.posted": "signage_posted",
    "signage.text": "signage_text",
    "signage": "signage_posted",
    "source": "source_kind",
    "source.path": "source_path",
}
_WINDOW = re.compile(
    r"^(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True)
class RowError:
    row: int
    column: str | None
    msg: str

    def item(self) -> ErrorItem:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        field = f"rows.{self.row}" + (f".{self.column}" if self.column else "")
        return ErrorItem("invalid_row", f"{where}: {self.msg}", field)


@dataclass
class _Row:
    number: int
    valid: columns.ValidCamera
    site: str | None


def parse_schedule_text(text: str) -> list[dict[str, Any]]:
    """`mon-fri 07:00-18:00; sat,sun 10:00-14:00` -> schedule windows (ValueError if not)."""
    windows: list[dict[str, Any]] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        m = _WINDOW.match(part.lower())
        if not m:
            raise ValueError(f"'{part}' is not 'DAYS HH:MM-HH:MM' (e.g. mon-fri 07:00-18:00)")
        days: list[str] = []
        for token in m["days"].split(","):
            first, _, last = token.partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise ValueError(f"unknown day in '{part}': use {', '.join(DAYS)}")
            if last:
                a, b = DAYS.index(first), DAYS.index(last)
                if b < a:
                    raise ValueError(f"day range '{token}' runs backwards")
                days.extend(DAYS[a : b + 1])
            else:
                days.append(first)
        windows.append({"days": days, "start": m["start"].zfill(5), "end": m["end"].zfill(5)})
    return windows


def _column_of(field: str) -> str:
    parts = field.split(".")
    if parts[0] == "source" and len(parts) >= 3:
        return "source_" + parts[2]  # source.<kind>.<field>
    if parts[0] == "source" and len(parts) == 2 and parts[1] in ("rtsp", "onvif", "file"):
        return "source_url" if parts[1] == "rtsp" else "source_kind"
    if parts[0] == "source" and len(parts) == 2:
        return "source_" + parts[1]  # source.<field> (a service check)
    if parts[0] in ("schedule", "mask_plan"):
        return parts[0]
    return _FIELD_COLUMN.get(field, _FIELD_COLUMN.get(".".join(parts[:2]), parts[0]))


def _payload(cells: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The API request body for a row, and (column, message) for cells that cannot be read."""
    errors: list[tuple[str, str]] = []

    def get(col: str) -> str | None:
        value = cells.get(col, "").strip()
        return value or None

    body: dict[str, Any] = {}
    for col in ("name", "purpose", "purpose_category", "mode", "timezone", "status"):
        if (v := get(col)) is not None:
            body[col] = v
    for col in ("retention_hours", "legal_basis_id"):
        if (v := get(col)) is not None:
            body[col] = v
    contact = {
        k: v for k in ("name", "email", "phone") if (v := get(f"owner_contact_{k}")) is not None
    }
    if contact:
        body["owner_contact"] = contact
    location: dict[str, Any] = {}
    if (v := get("address")) is not None:
        location["address"] = v
    for col in _FLOATS:
        if (v := get(col)) is not None:
            location[col] = v.replace(",", ".")
    if location:
        body["location"] = location
    signage: dict[str, Any] = {}
    if (v := get("signage_posted")) is not None:
        signage["posted"] = _BOOL_WORDS.get(v.lower(), v)
    if (v := get("signage_text")) is not None:
        signage["text"] = v
    if signage:
        body["signage"] = signage
    if (v := get("schedule")) is not None:
        try:
            body["schedule"] = parse_schedule_text(v)
        except ValueError as exc:
            errors.append(("schedule", str(exc)))
    source: dict[str, Any] = {}
    for key in (
        "kind",
        "url",
        "host",
        "port",
        "username",
        "password",
        "profile_token",
        "live_profile_token",
        "path",
    ):
        if (v := get(f"source_{key}")) is not None:
            source[key] = v
    if source:
        body["source"] = source
    return body, errors


def _pydantic_errors(exc: ValidationError, kind: str | None) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc)
        column = _column_of(field) if field else None
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"not used with source_kind {kind}" if loc[0] == "source" else "not allowed"
        elif err["type"] == "missing" and column in COLUMNS:
            msg = "required"
        elif err["type"] == "union_tag_invalid":
            msg = "must be one of: rtsp, onvif, file"
        out.append((column, msg))
    return out


def read_rows(content: bytes) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[RowError]]:
    """Header, (row number, cells) for every non-empty data row, and file-level errors."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [], [RowError(1, None, "the file is not UTF-8 (save it as 'CSV UTF-8')")]
    first = text.split("\n", 1)[0]
    # Swedish spreadsheet programs write ';' between columns (the comma is the decimal mark).
    delimiter = max((";", ",", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [], [RowError(1, None, "the file is empty")]
    except csv.Error as exc:
        return [], [], [RowError(1, None, f"cannot read the header: {exc}")]
    errors: list[RowError] = []
    seen: set[str] = set()
    for col in header:
        if col in seen:
            errors.append(RowError(1, col, "column appears twice"))
        elif col not in COLUMNS:
            errors.append(RowError(1, col or "(empty)", "unknown column"))
        seen.add(col)
    errors += [
        RowError(1, col, "required column is missing") for col in REQUIRED if col not in seen
    ]
    if errors:
        return header, [], errors
    rows: list[tuple[int, dict[str, str]]] = []
    number = 1
    try:
        for cells in reader:
            number += 1
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                errors.append(
                    RowError(number, None, f"has {len(cells)} cells, the header has {len(header)}")
                )
                continue
            rows.append((number, dict(zip(header, cells, strict=True))))
            if len(rows) > MAX_ROWS:
                return header, [], [RowError(number, None, f"more than {MAX_ROWS} rows")]
    except csv.Error as exc:
        errors.append(RowError(number + 1, None, f"cannot be read: {exc}"))
    return header, rows, errors


def import_cameras(
    *,
    session: Session,
    actor: Principal | None,
    box: SecretBox,
    file_roots: Sequence[Path],
    organisation_id: int,
    content: bytes,
    dry_run: bool = False,
) -> ImportResult:
    """Check every row, then create every camera (and missing sites) or nothing at all."""
    if actor is not None:
        actor.require_role(*service.WRITERS)
    organisation_id = accounts.target_org(session=session, actor=actor, requested=organisation_id)
    _, raw_rows, errors = read_rows(content)
    # The identity map holds objects weakly: keep the organisation's bases and sites referenced
    # so that checking thousands of rows does not load them again for every row.
    _pinned = (
        permit_service.list_organisation_bases(session=session, organisation_id=organisation_id),
        sites.list_organisation_sites(session=session, organisation_id=organisation_id),
    )
    good: list[_Row] = []
    for number, cells in raw_rows:
        body, cell_errors = _payload(cells)
        errors += [RowError(number, col, msg) for col, msg in cell_errors]
        kind = cells.get("source_kind", "").strip() or None
        try:
            data = CameraCreate.model_validate(body)
        except ValidationError as exc:
            errors += [RowError(number, col, msg) for col, msg in _pydantic_errors(exc, kind)]
            continue
        valid, problems = columns.validate_camera(
            session=session,
            organisation_id=organisation_id,
            data=data,
            box=box,
            file_roots=file_roots,
        )
        errors += [
            RowError(number, _column_of(p.field) if p.field else None, p.msg) for p in problems
        ]
        site = cells.get("site", "").strip() or None
        if site is not None and (len(site) > 200 or "\x00" in site):
            errors.append(RowError(number, "site", "at most 200 characters, no NUL characters"))
        if not cell_errors and not problems:
            good.append(_Row(number, valid, site))
    if errors:
        errors.sort(key=lambda e: (e.row, e.column or ""))
        bad_rows = len({e.row for e in errors})
        logger.info("camera import refused: %s bad rows, nothing imported", bad_rows)
        raise InvalidInput(
            f"{bad_rows} row(s) have errors; nothing was imported",
            items=[e.item() for e in errors],
        )
    if dry_run:
        return ImportResult(dry_run=True, rows=len(good), created=0, sites_created=0, camera_ids=[])
    site_ids: dict[str, int] = {}
    sites_created = 0
    ids: list[int] = []
    for row in good:
        site_id = None
        if row.site is not None:
            if row.site not in site_ids:
                found = sites.find_site(
                    session=session, organisation_id=organisation_id, name=row.site
                )
                if found is None:
                    found = sites.create_site(
                        session=session,
                        actor=actor,
                        data=SiteCreate(name=row.site),
                        organisation_id=organisation_id,
                    )
                    sites_created += 1
                site_ids[row.site] = found.id
            site_id = site_ids[row.site]
        valid = row.valid
        if site_id is not None:
            valid = columns.ValidCamera(
                valid.organisation_id, {**valid.values, "site_id": site_id}, valid.plan
            )
        camera = service.insert_camera(session=session, actor=actor, valid=valid, via="import")
        ids.append(camera.id)
    audit.record(
        session,
        action="camera.import",
        actor=actor,
        organisation_id=organisation_id,
        target_type="organisation",
        target_id=organisation_id,
        details={"rows": len(good), "created": len(ids), "sites_created": sites_created},
    )
    logger.info("imported %s cameras into organisation %s", len(ids), organisation_id)
    return ImportResult(
        dry_run=False,
        rows=len(good),
        created=len(ids),
        sites_created=sites_created,
        camera_ids=ids,
    )

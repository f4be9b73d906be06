"""The pages of the web interface: where they live, who may open them, what they call.

A page is a shell rendered on the server; its data comes from the JSON API, which decides every
authorisation question again for each call. The roles here only choose which pages a user is
offered (and who gets a 403 page instead of an empty one): they are taken from the API's own
role lists where the services export them, and `tests/web/test_pages.py` checks every page
against the authorisation matrix of the API operations it uses, so a page can never be offered
to a role the API would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry import service as registry_service
from vms.core.models import Role
from vms.export import search as export_search
from vms.export import service as export_service
from vms.pipeline import service as pipeline_service

ADMIN = Role.admin
FM = Role.facility_manager
DPO = Role.dpo
OPERATOR = Role.operator
POLICE = Role.police

CAMERA_WRITERS = frozenset(registry_service.WRITERS)
CAMERA_READERS = frozenset(registry_service.REPORT_READERS)  # operators use Live instead
DPO_VIEWS = frozenset({ADMIN, DPO})
LIVE = frozenset(pipeline_service.LIVE_ROLES)
RECORDINGS = frozenset(pipeline_service.RECORDING_ROLES)
EXPORTS = frozenset(export_service.READ_ROLES)
SEARCH = frozenset(export_search.SEARCH_ROLES)
EVERYONE = frozenset(Role)


@dataclass(frozen=True)
class PageSpec:
    name: str
    path: str  # the route template, as FastAPI knows it
    template: str
    title: str  # message key
    roles: frozenset[Role]
    script: str | None  # the page's ES module under static/js/pages/
    nav: bool = True
    # API operations the page's script needs to work at all: a role offered the page must be
    # allowed each of them (checked against the authorisation matrix in the tests).
    api: tuple[tuple[str, str], ...] = ()


PAGES: tuple[PageSpec, ...] = (
    PageSpec(
        "cameras",
        "/cameras",
        "cameras.html",
        "page.cameras",
        CAMERA_READERS,
        "cameras",
        api=(("GET", "/api/v1/cameras"), ("GET", "/api/v1/cameras/{camera_id}/status")),
    ),
    PageSpec(
        "camera_new",
        "/cameras/new",
        "camera_form.html",
        "page.camera_new",
        CAMERA_WRITERS,
        "camera_form",
        nav=False,
        api=(("POST", "/api/v1/cameras"), ("POST", "/api/v1/onvif/probe")),
    ),
    PageSpec(
        "camera_import",
        "/cameras/import",
        "camera_import.html",
        "page.camera_import",
        CAMERA_WRITERS,
        "camera_import",
        api=(("POST", "/api/v1/cameras/import"),),
    ),
    PageSpec(
        "camera_edit",
        "/cameras/{camera_id}",
        "camera_form.html",
        "page.camera_edit",
        CAMERA_WRITERS,
        "camera_form",
        nav=False,
        api=(("GET", "/api/v1/cameras/{camera_id}"), ("PATCH", "/api/v1/cameras/{camera_id}")),
    ),
    PageSpec(
        "mask_editor",
        "/cameras/{camera_id}/mask",
        "mask_editor.html",
        "page.mask_editor",
        CAMERA_WRITERS,
        "mask_editor",
        nav=False,
        api=(
            ("GET", "/api/v1/cameras/{camera_id}"),
            ("POST", "/api/v1/cameras/{camera_id}/mask-preview"),
            ("PATCH", "/api/v1/cameras/{camera_id}"),
        ),
    ),
    PageSpec(
        "legal_bases",
        "/legal-bases",
        "legal_bases.html",
        "page.legal_bases",
        CAMERA_READERS,
        "legal_bases",
        api=(("GET", "/api/v1/legal-bases"), ("POST", "/api/v1/legal-bases")),
    ),
    PageSpec(
        "compliance",
        "/compliance",
        "compliance.html",
        "page.compliance",
        CAMERA_READERS,
        "compliance",
        api=(("GET", "/api/v1/compliance"),),
    ),
    PageSpec(
        "register",
        "/register",
        "register.html",
        "page.register",
        CAMERA_READERS,
        "register",
        api=(("GET", "/api/v1/register"),),
    ),
    PageSpec(
        "retention",
        "/retention",
        "retention.html",
        "page.retention",
        DPO_VIEWS,
        "retention",
        api=(("GET", "/api/v1/reports/retention"), ("GET", "/api/v1/retention/receipts")),
    ),
    PageSpec(
        "audit",
        "/audit",
        "audit.html",
        "page.audit",
        DPO_VIEWS,
        "audit",
        api=(("GET", "/api/v1/audit"), ("GET", "/api/v1/audit/verify")),
    ),
    PageSpec(
        "live",
        "/live",
        "live.html",
        "page.live",
        LIVE,
        "live",
        api=(("GET", "/api/v1/cameras"), ("GET", "/api/v1/cameras/{camera_id}/live.mjpeg")),
    ),
    PageSpec(
        "live_camera",
        "/live/{camera_id}",
        "live_camera.html",
        "page.live_camera",
        LIVE,
        "live_camera",
        nav=False,
        api=(
            ("GET", "/api/v1/cameras/{camera_id}/status"),
            ("GET", "/api/v1/cameras/{camera_id}/live.mjpeg"),
        ),
    ),
    PageSpec(
        "recordings",
        "/recordings",
        "recordings.html",
        "page.recordings",
        RECORDINGS,
        "recordings",
        api=(
            ("GET", "/api/v1/cameras"),
            ("GET", "/api/v1/recordings"),
            ("GET", "/api/v1/recordings/{segment_id}/video"),
        ),
    ),
    PageSpec(
        "search",
        "/search",
        "search.html",
        "page.search",
        SEARCH,
        "search",
        api=(("GET", "/api/v1/cameras/near"),),
    ),
    PageSpec(
        "exports",
        "/exports",
        "exports.html",
        "page.exports",
        EXPORTS,
        "exports",
        api=(("GET", "/api/v1/exports"),),
    ),
    PageSpec(
        "export_detail",
        "/exports/{export_id}",
        "export_detail.html",
        "page.export_detail",
        EXPORTS,
        "export_detail",
        nav=False,
        api=(("GET", "/api/v1/exports/{export_id}"),),
    ),
    PageSpec(
        "verify",
        "/verify",
        "verify.html",
        "page.verify",
        EVERYONE,
        "verify",
        api=(("GET", "/api/v1/exports/public-key"),),
    ),
)

BY_NAME = {p.name: p for p in PAGES}

# Where a user lands after signing in: the first page of their daily work.
HOME: dict[Role, str] = {
    ADMIN: "cameras",
    FM: "cameras",
    DPO: "compliance",
    OPERATOR: "live",
    POLICE: "search",
}


def home_path(role: Role) -> str:
    return BY_NAME[HOME[role]].path


def nav_for(role: Role) -> list[PageSpec]:
    return [p for p in PAGES if p.nav and role in p.roles]

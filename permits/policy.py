"""What a camera may do at a given moment, derived from its record and its legal basis.

Pure: no database, no clock. The pipeline asks it for every camera continuously, retention for
every sweep, export for every request; the tests drive every branch from a table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

# IMY guidance: keeping footage longer than 72 hours needs a specific justification.
JUSTIFICATION_THRESHOLD_HOURS = 72
EXPIRING_WITHIN = dt.timedelta(days=30)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    """A weekly window in the camera's local time: days and [start, end) clock times.
    An end before the start runs past midnight into the next day."""

    days: tuple[str, ...]
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class BasisFacts:
    id: int
    kind: str  # assessment | permit | not_required
    status: str  # draft | in_force | expired | revoked
    live_view_allowed: bool
    recording_allowed: bool
    max_retention_hours: int
    masking_required: bool = True
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    review_by: dt.date | None = None
    retention_justification: str | None = None


@dataclass(frozen=True)
class CameraFacts:
    id: int
    mode: str  # live | recording | live_and_recording
    status: str  # active | paused | decommissioned
    retention_hours: int
    basis: BasisFacts | None
    schedule: tuple[Window, ...] = ()
    timezone: str = "Europe/Stockholm"
    # Whether the camera's mask plan anonymises anything: None without a plan (the pipeline
    # then anonymises every pixel), False for a plan that keeps every pixel.
    plan_masks: bool | None = None
    # Footage that ended before `retention_kept_before` keeps `retention_kept_hours` (a
    # shortened retention whose purge nobody has confirmed yet).
    retention_kept_before: dt.datetime | None = None
    retention_kept_hours: int | None = None


@dataclass(frozen=True)
class Policy:
    may_view_live: bool
    may_record: bool
    max_retention_hours: int
    masking_required: bool
    active_now: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)
    basis_id: int | None = None
    # Set while older footage keeps a longer retention than `max_retention_hours` (see
    # CameraFacts); the sweep applies it per segment.
    kept_before: dt.datetime | None = None
    kept_hours: int | None = None


def basis_in_force(basis: BasisFacts, at: dt.datetime) -> tuple[bool, str | None]:
    """Whether the basis holds at `at`, and if not, why."""
    if basis.status == "revoked":
        return False, f"legal basis {basis.id} is revoked"
    if basis.status == "draft":
        return False, f"legal basis {basis.id} is a draft, not in force"
    if basis.status == "expired":
        return False, f"legal basis {basis.id} has expired"
    if basis.status != "in_force":
        # Fail closed: a status this code does not know must not let anything through.
        return False, f"legal basis {basis.id} has unknown status {basis.status!r}"
    if basis.valid_from is not None and at < basis.valid_from:
        return False, f"legal basis {basis.id} is valid only from {basis.valid_from.isoformat()}"
    if basis.valid_until is not None and at >= basis.valid_until:
        return False, f"legal basis {basis.id} expired at {basis.valid_until.isoformat()}"
    return True, None


def in_schedule(schedule: tuple[Window, ...], at: dt.datetime, timezone: str) -> bool:
    """Whether `at` falls in a window. Empty schedule: always. start == end: 24 hours from start."""
    if not schedule:
        return True
    local = at.astimezone(ZoneInfo(timezone))
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    now = local.time()
    for w in schedule:
        if w.start < w.end:
            if today in w.days and w.start <= now < w.end:
                return True
        else:  # over midnight: the part after start today, or before end on the next day
            if today in w.days and now >= w.start:
                return True
            if yesterday in w.days and now < w.end:
                return True
    return False


def policy_for(camera: CameraFacts, at: dt.datetime) -> Policy:
    """What `camera` may do at `at`. No in-force basis: nothing may be viewed or recorded."""
    if at.tzinfo is None:
        raise ValueError("policy_for needs an aware datetime")
    reasons: list[str] = []
    basis = camera.basis
    max_retention = camera.retention_hours
    if basis is not None:
        # The basis's limit binds existing footage even after the basis lapsed.
        max_retention = min(max_retention, basis.max_retention_hours)
    if camera.mode == "live":
        max_retention = 0
    masking_required = True if basis is None else basis.masking_required

    kept_before, kept_hours = _kept(camera, max_retention)
    if camera.status == "decommissioned":
        return Policy(
            False,
            False,
            max_retention,
            masking_required,
            False,
            ("camera is decommissioned",),
            basis.id if basis else None,
            kept_before,
            kept_hours,
        )

    active = camera.status == "active"
    if camera.status == "paused":
        reasons.append("camera is paused")
    scheduled = in_schedule(camera.schedule, at, camera.timezone)
    if not scheduled:
        reasons.append("outside the camera's schedule")
    active_now = active and scheduled

    if basis is None:
        reasons.append("no legal basis linked to the camera")
        basis_ok = False
    else:
        basis_ok, why = basis_in_force(basis, at)
        if why:
            reasons.append(why)

    may_view = active_now and basis_ok
    may_record = active_now and basis_ok
    if camera.mode == "recording":
        may_view = False
        reasons.append("camera mode is recording-only: no live view")
    if camera.mode == "live":
        may_record = False
        reasons.append("camera mode is live-only: nothing is recorded")
    if basis is not None and basis_ok:
        if not basis.live_view_allowed and camera.mode != "recording":
            may_view = False
            reasons.append(f"legal basis {basis.id} does not allow live view")
        if not basis.recording_allowed and camera.mode != "live":
            may_record = False
            reasons.append(f"legal basis {basis.id} does not allow recording")
    if max_retention <= 0 and may_record:
        may_record = False
        reasons.append("retention is 0 hours: nothing may be stored")
    if masking_required and camera.plan_masks is False and (may_view or may_record):
        # Fail closed: a plan that keeps every pixel where masking is required would show and
        # store everything unmasked.
        may_view = may_record = False
        reasons.append(_UNMASKED_PLAN.format(basis=_basis_ref(basis)))
    return Policy(
        may_view_live=may_view,
        may_record=may_record,
        max_retention_hours=max_retention,
        masking_required=masking_required,
        active_now=active_now,
        reasons=tuple(reasons),
        basis_id=basis.id if basis else None,
        kept_before=kept_before,
        kept_hours=kept_hours,
    )


def _kept(camera: CameraFacts, max_retention: int) -> tuple[dt.datetime | None, int | None]:
    """The older footage's longer retention, while it is longer than today's."""
    before, hours = camera.retention_kept_before, camera.retention_kept_hours
    if before is None or hours is None or hours <= max_retention:
        return None, None
    return before, hours


def permit_status(camera: CameraFacts, at: dt.datetime) -> str:
    """ok | missing | draft | expiring | expired | revoked | conflict, for the register.

    A basis that is in force but not valid yet (valid_from in the future) counts as `draft`:
    nothing may run on it yet.
    """
    if at.tzinfo is None:
        raise ValueError("permit_status needs an aware datetime")
    basis = camera.basis
    if basis is None:
        return "missing"
    if basis.status == "revoked":
        return "revoked"
    if basis.status == "draft":
        return "draft"
    if basis.status == "expired" or (basis.valid_until is not None and at >= basis.valid_until):
        return "expired"
    in_force, _ = basis_in_force(basis, at)
    if not in_force:
        return "draft"
    if conflicts(camera):
        return "conflict"
    soon = at + EXPIRING_WITHIN
    if basis.valid_until is not None and basis.valid_until <= soon:
        return "expiring"
    if basis.review_by is not None and basis.review_by <= soon.date():
        return "expiring"
    return "ok"


def conflicts(camera: CameraFacts) -> list[tuple[str, str]]:
    """Where the camera asks for more than its basis allows: (field, message) pairs."""
    basis = camera.basis
    if basis is None:
        return []
    out: list[tuple[str, str]] = []
    # A live-only camera stores nothing, so its retention setting cannot exceed anything.
    if camera.mode != "live" and camera.retention_hours > basis.max_retention_hours:
        out.append(
            (
                "retention_hours",
                f"retention_hours {camera.retention_hours} exceeds the {basis.max_retention_hours} "
                f"hours allowed by legal basis {basis.id}",
            )
        )
    if camera.mode in ("recording", "live_and_recording") and not basis.recording_allowed:
        out.append(
            (
                "mode",
                f"mode {camera.mode} records, but legal basis {basis.id} does not allow recording",
            )
        )
    if camera.mode in ("live", "live_and_recording") and not basis.live_view_allowed:
        out.append(
            (
                "mode",
                f"mode {camera.mode} shows live view, but legal basis {basis.id} does not allow it",
            )
        )
    if basis.masking_required and camera.plan_masks is False:
        out.append(("mask_plan", _UNMASKED_PLAN.format(basis=_basis_ref(basis))))
    return out


_UNMASKED_PLAN = (
    "the mask plan anonymises nothing, but {basis} requires masking (draw the zones, or save no "
    "plan to anonymise every pixel until then)"
)


def _basis_ref(basis: BasisFacts | None) -> str:
    return f"legal basis {basis.id}" if basis is not None else "the camera (it has no basis)"

"""Time values at the boundary: aware UTC in, ISO 8601 out."""

from __future__ import annotations

import datetime as dt
from typing import overload

from vms.core.errors import InvalidInput


def aware_utc(value: dt.datetime, field: str) -> dt.datetime:
    """`value` in UTC; a naive datetime is refused naming `field` (a wall-clock time without a
    zone is how retention bugs start)."""
    if value.tzinfo is None:
        raise InvalidInput("timestamps must carry a timezone", field=field)
    return value.astimezone(dt.UTC)


@overload
def iso(value: dt.datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, to the microsecond (manifests); None stays None."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def iso_seconds(value: dt.datetime) -> str:
    """ISO 8601 UTC to the second: how messages for people show times."""
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

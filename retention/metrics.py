"""Prometheus metrics of the retention sweep (default registry; `/metrics` is mounted elsewhere)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELETED = Counter(
    "vms_retention_deleted_segments",
    "Footage files deleted by retention, by rule (retention, disk_pressure, orphan, partial).",
    ["rule"],
)
DELETED_BYTES = Counter(
    "vms_retention_deleted_bytes", "Bytes of footage deleted by retention, by rule.", ["rule"]
)
LAST_SWEEP = Gauge(
    "vms_retention_last_sweep_timestamp_seconds", "When the last retention sweep finished."
)
SWEEP_SECONDS = Gauge("vms_retention_last_sweep_duration_seconds", "How long the last sweep took.")
SHORTENED = Gauge(
    "vms_retention_shortened_by_disk_pressure",
    "1 while disk pressure has cut this camera's footage shorter than its policy allows.",
    ["camera_id"],
)
DISK_FREE = Gauge("vms_retention_disk_free_bytes", "Free bytes on the recordings volume.")
DISK_FLOOR = Gauge("vms_retention_disk_free_floor_bytes", "Configured free-space floor.")
HELD_DUE = Gauge(
    "vms_retention_held_past_retention_segments",
    "Segments older than retention that a legal hold keeps (last sweep).",
)

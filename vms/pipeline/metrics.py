"""Per-camera pipeline metrics in the Prometheus text format, read from the supervisor's status
at scrape time (a collector, not counters updated per frame)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vms.pipeline.backend import PipelineBackend
from vms.pipeline.slots import CameraStatusView
from vms.pipeline.status import CameraState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ["camera_id", "organisation_id"]


class PipelineCollector(Collector):
    def __init__(self, supervisor: PipelineBackend | None) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        views = self.supervisor.statuses() if self.supervisor is not None else []
        running = GaugeMetricFamily(
            "vms_pipeline_running", "1 while the pipeline supervisor runs in this server."
        )
        running.add_metric([], 1.0 if self.supervisor is not None else 0.0)
        yield running
        state = GaugeMetricFamily(
            "vms_camera_state", "1 for the camera's current state.", labels=[*_LABELS, "state"]
        )
        gauges = {
            "input_fps": GaugeMetricFamily(
                "vms_camera_input_fps", "Frames per second decoded from the source.", labels=_LABELS
            ),
            "output_fps": GaugeMetricFamily(
                "vms_camera_output_fps",
                "Masked frames per second delivered to live view and recording.",
                labels=_LABELS,
            ),
            "width": GaugeMetricFamily(
                "vms_camera_width_pixels", "Width of the decoded stream.", labels=_LABELS
            ),
            "height": GaugeMetricFamily(
                "vms_camera_height_pixels", "Height of the decoded stream.", labels=_LABELS
            ),
            "live_viewers": GaugeMetricFamily(
                "vms_camera_live_viewers", "Open live views.", labels=_LABELS
            ),
            "recording": GaugeMetricFamily(
                "vms_camera_recording", "1 while a segment is being written.", labels=_LABELS
            ),
            "last_frame": GaugeMetricFamily(
                "vms_camera_last_frame_timestamp_seconds",
                "When the last frame was decoded (Unix time).",
                labels=_LABELS,
            ),
            "passthrough": GaugeMetricFamily(
                "vms_camera_passthrough",
                "1 while the camera records its own stream, masks checked (passthrough).",
                labels=_LABELS,
            ),
            "passthrough_verified": GaugeMetricFamily(
                "vms_camera_passthrough_verified_timestamp_seconds",
                "When a keyframe last passed the in-camera mask check (Unix time).",
                labels=_LABELS,
            ),
            "passthrough_failed": GaugeMetricFamily(
                "vms_camera_passthrough_failed",
                "1 when passthrough stopped: a failed check or a camera that cannot mask.",
                labels=_LABELS,
            ),
        }
        counters = {
            "frames_in": CounterMetricFamily(
                "vms_camera_frames", "Frames decoded from the source.", labels=_LABELS
            ),
            "frames_out": CounterMetricFamily(
                "vms_camera_frames_out",
                "Masked frames delivered to live view and recording.",
                labels=_LABELS,
            ),
            "dropped_frames": CounterMetricFamily(
                "vms_camera_dropped_frames",
                "Frames dropped because masking/encoding fell behind.",
                labels=_LABELS,
            ),
            "reconnects": CounterMetricFamily(
                "vms_camera_reconnects", "Reconnections to the source.", labels=_LABELS
            ),
            "restarts": CounterMetricFamily(
                "vms_camera_worker_restarts", "Worker processes restarted.", labels=_LABELS
            ),
            "segments_written": CounterMetricFamily(
                "vms_camera_segments", "Segments written and indexed.", labels=_LABELS
            ),
            "mask_fail_closed": CounterMetricFamily(
                "vms_camera_mask_fail_closed_frames",
                "Frames fully anonymised because masking failed.",
                labels=_LABELS,
            ),
            "passthrough_checks": CounterMetricFamily(
                "vms_camera_passthrough_checks",
                "Frames whose in-camera masks passed the check.",
                labels=_LABELS,
            ),
            "quarantined_segments": CounterMetricFamily(
                "vms_camera_quarantined_segments",
                "Passthrough segments no passing check covers (not playable until re-masked).",
                labels=_LABELS,
            ),
        }
        node = GaugeMetricFamily(
            "vms_camera_node_info",
            "1 on the cluster node that runs the camera (Ray backend).",
            labels=[*_LABELS, "node"],
        )
        for view in views:
            labels = [str(view.camera_id), str(view.organisation_id or "")]
            if view.node is not None:
                node.add_metric([*labels, view.node], 1.0)
            for s in CameraState:
                state.add_metric([*labels, s.value], 1.0 if view.state is s else 0.0)
            for key, family in gauges.items():
                value = _gauge(view, key)
                if value is not None:
                    family.add_metric(labels, value)
            for key, counter in counters.items():
                counter.add_metric(labels, float(getattr(view, key)))
        yield state
        yield node
        yield from gauges.values()
        yield from counters.values()


def _gauge(view: CameraStatusView, key: str) -> float | None:
    if key == "recording":
        return 1.0 if view.recording.value == "recording" else 0.0
    if key == "last_frame":
        return view.last_frame_at.timestamp() if view.last_frame_at else None
    if key == "passthrough":
        return 1.0 if view.recording_path == "passthrough" else 0.0
    if key == "passthrough_verified":
        at = view.passthrough_verified_at
        return at.timestamp() if at else None
    if key == "passthrough_failed":
        return 1.0 if view.passthrough_failed else 0.0
    value = getattr(view, key)
    return None if value is None else float(value)


def render(supervisor: PipelineBackend | None) -> bytes:
    """Everything the process exports: the default registry (retention, ...) plus cameras."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(supervisor))
    return generate_latest(REGISTRY) + generate_latest(registry)

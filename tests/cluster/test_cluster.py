"""Camera workers on a real local Ray cluster (head + two recording nodes), a real GStreamer
RTSP server and a real database: placement, live view through the cluster, actor and node
loss, registry changes, and no double recording when an old actor is cut off."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from registry.models import Camera, CameraStatus
from retention.models import Segment
from sample_streams import RtspServerProcess
from tests.cluster.conftest import (
    LEASE_TTL_S,
    LocalCluster,
    recording,
    view_where,
    wait_for,
)
from tests.pipeline.conftest import FACADE_PLAN, LiveServer, committed, gaps_of, segments_of
from tests.pipeline.test_api import ANON, INNER_ANON, audit_entries, decode, mjpeg_frames
from vms.core.db import utcnow
from vms.core.files import file_sha256
from vms.core.models import Role
from vms.pipeline.cluster import leases
from vms.pipeline.cluster.supervisor import RaySupervisor

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]

FILLED_FACADE = {**FACADE_PLAN, "method": "fill"}


@pytest.fixture
def ray_server(local_cluster: LocalCluster, namespace: str) -> Iterator[LiveServer]:
    """The whole app with the Ray backend: API + gateway, cameras on the cluster."""
    with LiveServer(local_cluster.settings(namespace)) as server:
        yield server


def sup_of(server: LiveServer) -> RaySupervisor:
    sup = server.app.state.pipeline
    assert isinstance(sup, RaySupervisor)
    return sup


def assert_index_matches_files(engine: Engine, data_dir: Path, camera_id: int) -> list[Segment]:
    """Every indexed segment has its file with its hash, segments never overlap, and no
    finished file of the camera is left without its row."""
    segments = segments_of(engine, camera_id)
    for seg in segments:
        path = data_dir / seg.path
        assert path.exists(), f"indexed segment {seg.path} has no file"
        assert file_sha256(path) == seg.sha256
    for a, b in itertools.pairwise(segments):
        assert a.end <= b.start + dt.timedelta(milliseconds=1), f"overlap: {a.path} {b.path}"

    def without_rows() -> set[str]:
        on_disk = {
            p.relative_to(data_dir).as_posix()
            for p in (data_dir / "recordings" / str(camera_id)).rglob("*.mp4")
        }
        return on_disk - {s.path for s in segments_of(engine, camera_id)}

    # A worker that is still recording renames a finished file before its row commits, and a
    # refused file is removed just after the refusal: a file is without its row for that
    # moment only. So the files seen without rows must get one (or go) within seconds.
    stray = without_rows()
    deadline = time.monotonic() + 10
    while stray and time.monotonic() < deadline:
        time.sleep(0.2)
        stray &= without_rows()
    assert not stray, f"files without rows: {sorted(stray)}"
    return segments


def test_cameras_spread_over_nodes_live_view_status_and_cluster_route(
    rtsp_server: RtspServerProcess,
    local_cluster: LocalCluster,
    ray_server: LiveServer,
) -> None:
    engine = local_cluster.engine
    with committed(engine) as f:
        org = f.org()
        source = {"kind": "rtsp", "url": rtsp_server.url("/real360")}
        cameras = [f.camera(org, source=source, mask_plan=FILLED_FACADE) for _ in range(4)]
        operator = f.user(Role.operator, org)
        manager = f.user(Role.facility_manager, org)
        dpo = f.user(Role.dpo, org)
        admin = f.user(Role.admin)
    sup = sup_of(ray_server)
    views = [wait_for(recording(sup, c.id), 60, f"camera {c.id} recording") for c in cameras]
    nodes = {v.node for v in views}
    worker_nodes = {n.node_id for n in local_cluster.nodes}
    assert nodes <= worker_nodes, "no camera on the head node (it has no camera slots)"
    assert len(nodes) == 2, f"cameras spread over both recording nodes: {[v.node for v in views]}"

    with httpx.Client(base_url=ray_server.url, timeout=20) as api:
        # Status says where the camera runs; the cluster route shows nodes, slots and cameras.
        body = api.get(f"/api/v1/cameras/{cameras[0].id}/status", headers=operator.headers)
        assert body.status_code == 200, body.text
        assert body.json()["node"] == views[0].node
        assert body.json()["state"] == "streaming"
        assert api.get("/api/v1/cluster", headers=operator.headers).status_code == 403
        cluster = api.get("/api/v1/cluster", headers=admin.headers).json()
        assert cluster["backend"] == "ray"
        assert cluster["reachable"]
        assert cluster["capacity"] == 2 * 3
        by_node = {n["node_id"]: n for n in cluster["nodes"]}
        assert {n["node_id"] for n in cluster["nodes"] if n["head"]} - worker_nodes
        placed = sorted(c for n in nodes for c in by_node[n]["cameras"])
        assert placed == sorted(c.id for c in cameras)
        assert cluster["cameras"] == 4
        metrics = api.get("/metrics", headers=admin.headers).text
        assert f'vms_camera_node_info{{camera_id="{cameras[0].id}"' in metrics

        # Live view on the API node of a camera that runs on another node: masked, audited.
        base = f"/api/v1/cameras/{cameras[1].id}"
        with api.stream("GET", f"{base}/live.mjpeg", headers=operator.headers) as live:
            assert live.status_code == 200
            frames: list[np.ndarray] = []
            for jpeg in mjpeg_frames(live):
                frames.append(decode(jpeg))
                if len(frames) == 3:
                    break
        for image in frames:
            assert image.shape == (360, 640, 3)
            assert image[INNER_ANON].max() <= 40  # anonymised outside the strip
            assert image[~ANON].mean() > 40  # the strip shows the scene
        ended = wait_for(lambda: audit_entries(engine, "live.end"), 10, "live.end audited")
        assert ended[-1].target_id == str(cameras[1].id)
        assert ended[-1].details["frames"] >= 3
        assert [e.target_id for e in audit_entries(engine, "live.start")][-1] == str(cameras[1].id)
        snap = api.get(f"{base}/snapshot.jpg", headers=operator.headers)
        assert snap.status_code == 200
        assert decode(snap.content)[INNER_ANON].max() <= 40

        # The mask preview comes from the camera's actor too: raw pixels under the zones for
        # the facility manager, masked for the DPO.
        raw = api.get(f"{base}/mask-preview.png", headers=manager.headers)
        masked = api.get(f"{base}/mask-preview.png", headers=dpo.headers)
        assert raw.status_code == masked.status_code == 200
        assert decode(masked.content)[INNER_ANON][:, 1].mean() < 25
        assert decode(raw.content)[INNER_ANON][:, 1].mean() > 25
        previews = audit_entries(engine, "camera.mask_preview")[-2:]
        assert [(e.details["raw_frame"], e.details["frame_from"]) for e in previews] == [
            (True, "worker"),
            (False, "worker"),
        ]
    for camera in cameras:
        segments = assert_index_matches_files(engine, local_cluster.data_dir, camera.id)
        assert segments, f"camera {camera.id} recorded"


def lease_epoch(engine: Engine, camera_id: int) -> int | None:
    from vms.pipeline.cluster.models import CameraLease

    with Session(engine) as session:
        row = session.get(CameraLease, camera_id)
        return row.epoch if row is not None else None


def test_a_sigkilled_camera_actor_is_decoding_again_within_seconds(
    rtsp_server: RtspServerProcess, local_cluster: LocalCluster, ray_server: LiveServer
) -> None:
    engine = local_cluster.engine
    with committed(engine) as f:
        camera = f.camera(source={"kind": "rtsp", "url": rtsp_server.url("/real360")})
    sup = sup_of(ray_server)
    before = wait_for(recording(sup, camera.id), 60, "recording")
    wait_for(lambda: segments_of(engine, camera.id), 20, "a first segment")
    epoch = lease_epoch(engine, camera.id)
    assert before.pid is not None
    os.kill(before.pid, signal.SIGKILL)
    killed = time.monotonic()
    after = wait_for(
        view_where(sup, camera.id, lambda v: v.pid != before.pid and v.state.value == "streaming"),
        30,
        "a new actor process decoding",
    )
    decoding_s = time.monotonic() - killed
    wait_for(recording(sup, camera.id), 20, "recording again")
    where = "same" if after.node == before.node else "other"
    print(f"SIGKILL -> decoding again: {decoding_s:.1f}s (restarted on the {where} node)")
    assert decoding_s < 15
    assert lease_epoch(engine, camera.id) == (epoch or 0) + 1
    # The discarded partial and the time until the successor recorded are one gap.
    gap = wait_for(
        lambda: [g for g in gaps_of(engine, camera.id) if g.reason == "worker_crashed" and g.end],
        20,
        "the worker_crashed gap closed",
    )[0]
    gap_end = gap.end
    assert gap_end is not None
    wait_for(
        lambda: len([s for s in segments_of(engine, camera.id) if s.start >= gap_end]) >= 1,
        20,
        "a segment after the gap",
    )
    segments = assert_index_matches_files(engine, local_cluster.data_dir, camera.id)
    earlier = [s for s in segments if s.end <= gap.start + dt.timedelta(milliseconds=1)]
    later = [s for s in segments if s.start >= gap_end - dt.timedelta(milliseconds=1)]
    assert earlier
    assert len(earlier) + len(later) == len(segments), "no segment inside the gap"
    assert earlier[-1].end == gap.start


def set_camera(engine: Engine, camera_id: int, **values: object) -> None:
    with Session(engine) as session:
        session.execute(update(Camera).where(Camera.id == camera_id).values(**values))
        session.commit()


def actor_names(namespace: str) -> set[str]:
    import ray

    return {
        e["name"]
        for e in ray.util.list_named_actors(all_namespaces=True)
        if e["namespace"] == namespace
    }


def test_registry_changes_reach_the_actor_within_a_reconcile_interval(
    rtsp_server: RtspServerProcess,
    local_cluster: LocalCluster,
    ray_server: LiveServer,
    namespace: str,
) -> None:
    from masking import plan_hash

    engine = local_cluster.engine
    with committed(engine) as f:
        camera = f.camera(source={"kind": "rtsp", "url": rtsp_server.url("/real360")})
        paused = f.camera(
            source={"kind": "rtsp", "url": rtsp_server.url("/real360")}, status=CameraStatus.paused
        )
    sup = sup_of(ray_server)
    wait_for(recording(sup, camera.id), 60, "recording")
    name = f"vms-camera-{camera.id}"
    assert name in actor_names(namespace)
    # Paused from the start: no actor, no slot, but its gap says why there is no footage.
    assert sup.status(paused.id).state.value == "blocked"
    assert f"vms-camera-{paused.id}" not in actor_names(namespace)
    (never,) = wait_for(lambda: gaps_of(engine, paused.id), 10, "the paused camera's gap")
    assert (never.reason, never.end) == ("policy", None)

    # A new mask plan: the actor re-reads the camera and restarts its worker with it.
    digest = plan_hash(FILLED_FACADE)
    set_camera(engine, camera.id, mask_plan=FILLED_FACADE, mask_plan_hash=digest)
    changed = time.monotonic()
    wait_for(
        lambda: any(s.mask_plan_hash == digest for s in segments_of(engine, camera.id)),
        20,
        "a segment masked with the new plan",
    )
    print(f"mask plan change -> first segment with it: {time.monotonic() - changed:.1f}s")

    # Paused: the actor records the policy gap, releases its slot and is gone.
    set_camera(engine, camera.id, status=CameraStatus.paused)
    paused_at = time.monotonic()
    wait_for(view_where(sup, camera.id, lambda v: v.state.value == "blocked"), 10, "blocked")
    wait_for(lambda: name not in actor_names(namespace), 20, "the actor gone")
    print(f"paused -> actor stopped: {time.monotonic() - paused_at:.1f}s")
    gap = wait_for(
        lambda: [g for g in gaps_of(engine, camera.id) if g.reason == "policy"], 10, "a policy gap"
    )[0]
    assert gap.end is None
    assert gap.start == segments_of(engine, camera.id)[-1].end

    # Active again: a new actor, recording, and the gap closed where recording resumed.
    set_camera(engine, camera.id, status=CameraStatus.active)
    wait_for(recording(sup, camera.id), 30, "recording again")
    closed = wait_for(
        lambda: [g for g in gaps_of(engine, camera.id) if g.id == gap.id and g.end],
        20,
        "the policy gap closed",
    )[0].end
    assert closed is not None
    wait_for(
        lambda: any(s.start >= closed for s in segments_of(engine, camera.id)),
        20,
        "a segment after the gap",
    )

    # Decommissioned: the actor is gone and the camera owes no more footage.
    set_camera(
        engine,
        camera.id,
        status=CameraStatus.decommissioned,
        decommissioned_at=dt.datetime.now(dt.UTC),
    )
    wait_for(lambda: name not in actor_names(namespace), 20, "the actor gone")
    wait_for(lambda: sup.status(camera.id).organisation_id is None, 10, "no status any more")
    assert all(g.end is not None for g in gaps_of(engine, camera.id))
    assert_index_matches_files(engine, local_cluster.data_dir, camera.id)


def test_a_cut_off_actor_cannot_record_after_its_replacement_took_over(
    rtsp_server: RtspServerProcess,
    local_cluster: LocalCluster,
    ray_server: LiveServer,
    namespace: str,
) -> None:
    """A partition, simulated: the camera's actor is frozen (SIGSTOP: it can neither renew its
    lease nor write, as when its node is cut off), a replacement on another "node" takes the
    lease once it expired and records; then the old actor wakes up with its open segment. Its
    writes are refused and it stands down; nothing in the index overlaps."""
    from vms.pipeline.cluster.runner import CameraRunner

    engine = local_cluster.engine
    with committed(engine) as f:
        camera = f.camera(source={"kind": "rtsp", "url": rtsp_server.url("/real360")})
    sup = sup_of(ray_server)
    old = wait_for(recording(sup, camera.id), 60, "recording")
    wait_for(lambda: segments_of(engine, camera.id), 20, "a first segment")
    epoch = lease_epoch(engine, camera.id)
    assert old.pid is not None
    assert epoch is not None
    os.kill(old.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    replacement = CameraRunner(camera.id, local_cluster.settings(namespace), node_id="other-node")
    replacement.start()
    try:
        wait_for(lambda: replacement.report().epoch == epoch + 1, 15, "the takeover")
        took_over = time.monotonic() - frozen
        print(f"frozen actor -> replacement holds the lease: {took_over:.1f}s")
        assert took_over >= LEASE_TTL_S * 0.5, "a live lease is not taken"
        first = wait_for(
            lambda: [g for g in gaps_of(engine, camera.id) if g.reason == "worker_crashed"],
            10,
            "the takeover's gap",
        )[0]
        wait_for(
            lambda: len([s for s in segments_of(engine, camera.id) if s.start >= first.start]) >= 2,
            20,
            "segments by the replacement",
        )
        os.kill(old.pid, signal.SIGCONT)
        woke = wait_for(
            view_where(sup, camera.id, lambda v: "held by other-node" in (v.last_error or "")),
            20,
            "the old actor standing down",
        )
        assert woke.pid == old.pid
        assert woke.state.value == "starting"
        time.sleep(2 * LEASE_TTL_S)
        assert replacement.report().epoch == epoch + 1
        assert_index_matches_files(engine, local_cluster.data_dir, camera.id)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old.pid, signal.SIGCONT)
        replacement.shutdown("pipeline_stopped", "test replacement stopped")
    # Released cleanly: the actor takes the camera back at once, and no crash is recorded.
    back = wait_for(
        view_where(sup, camera.id, lambda v: v.pid == old.pid and v.recording.value == "recording"),
        20,
        "the actor recording again",
    )
    assert back.node == old.node
    assert lease_epoch(engine, camera.id) == epoch + 2
    wait_for(lambda: all(g.end is not None for g in gaps_of(engine, camera.id)), 20, "gaps closed")
    reasons = [g.reason for g in gaps_of(engine, camera.id)]
    assert reasons == ["worker_crashed", "pipeline_stopped"]
    assert_index_matches_files(engine, local_cluster.data_dir, camera.id)

    # Now the lease is taken from the actor while it records (a successor that wrongly took it
    # for dead): the segment it has open when it notices is refused by the fence and removed.
    count = len(segments_of(engine, camera.id))
    wait_for(lambda: len(segments_of(engine, camera.id)) > count, 20, "recording on")
    with Session(engine) as session:
        stolen = leases.acquire(
            session=session,
            camera_id=camera.id,
            holder="intruder",
            node_id="intruder-node",
            pid=None,
            ttl_s=60,
            now=utcnow(),
            steal_epoch=epoch + 2,
        )
        session.commit()
    steal_at = utcnow()
    assert stolen.epoch == epoch + 3
    wait_for(
        view_where(sup, camera.id, lambda v: "held by intruder" in (v.last_error or "")),
        10,
        "the actor standing down",
    )
    time.sleep(1.0)
    late = [s.path for s in segments_of(engine, camera.id) if s.end > steal_at]
    assert late == [], "no footage of the old holder indexed after the takeover"
    assert_index_matches_files(engine, local_cluster.data_dir, camera.id)


def test_a_lost_node_moves_its_cameras_and_a_new_node_takes_new_ones(
    rtsp_server: RtspServerProcess, local_cluster: LocalCluster, ray_server: LiveServer
) -> None:
    engine = local_cluster.engine
    with committed(engine) as f:
        source = {"kind": "rtsp", "url": rtsp_server.url("/real360")}
        cameras = [f.camera(source=source) for _ in range(2)]
    sup = sup_of(ray_server)
    views = {c.id: wait_for(recording(sup, c.id), 60, f"camera {c.id} recording") for c in cameras}
    for c in cameras:
        wait_for(lambda c=c: segments_of(engine, c.id), 20, "a first segment")  # type: ignore[misc]
    doomed = next(n for n in local_cluster.nodes if n.node_id == views[cameras[0].id].node)
    moving = [c.id for c in cameras if views[c.id].node == doomed.node_id]
    local_cluster.remove_node(doomed)
    lost = time.monotonic()
    for camera_id in moving:
        wait_for(
            view_where(
                sup,
                camera_id,
                lambda v: v.node not in (None, doomed.node_id) and v.recording.value == "recording",
            ),
            60,
            f"camera {camera_id} recording on another node",
        )
    moved_s = time.monotonic() - lost
    print(f"node lost -> its {len(moving)} camera(s) recording elsewhere: {moved_s:.1f}s")
    assert moved_s < 30
    for camera_id in moving:
        gap = wait_for(
            lambda c=camera_id: [  # type: ignore[misc]
                g for g in gaps_of(engine, c) if g.reason == "worker_crashed" and g.end
            ],
            20,
            "the node-loss gap closed",
        )[0]
        segments = assert_index_matches_files(engine, local_cluster.data_dir, camera_id)
        assert any(s.end == gap.start for s in segments), "the gap starts where footage ends"
        partials = list((local_cluster.data_dir / "recordings" / str(camera_id)).rglob("*.partial"))
        assert len(partials) <= 1, "the dead node's partial was discarded (one may be open now)"

    # A node joins: running cameras stay where they are (no rebalancing), new ones go there.
    fresh = local_cluster.add_node()
    with committed(engine) as f:
        newcomer = f.camera(source=source)
    placed = wait_for(recording(sup, newcomer.id), 60, "the new camera recording")
    assert placed.node == fresh.node_id
    assert {sup.status(c.id).node for c in cameras} == {
        n.node_id for n in local_cluster.nodes if n is not fresh
    }


def test_cameras_record_on_while_the_gateway_is_down_and_it_comes_back(
    rtsp_server: RtspServerProcess, local_cluster: LocalCluster, ray_server: LiveServer
) -> None:
    """The Ray driver is the gateway process, not the API: when it dies (as it does when the
    head stays unreachable), the detached actors record on and the API starts a new one."""
    engine = local_cluster.engine
    with committed(engine) as f:
        camera = f.camera(source={"kind": "rtsp", "url": rtsp_server.url("/real360")})
    sup = sup_of(ray_server)
    before = wait_for(recording(sup, camera.id), 60, "recording")
    gateway = sup.gateway_pid
    assert gateway is not None
    os.kill(gateway, signal.SIGKILL)
    killed = utcnow()
    wait_for(lambda: sup.gateway_restarts == 1, 10, "the gateway restarted")
    wait_for(
        lambda: [s for s in segments_of(engine, camera.id) if s.start >= killed],
        20,
        "footage recorded after the gateway died",
    )
    after = wait_for(
        view_where(sup, camera.id, lambda v: v.updated_at is not None and v.updated_at > killed),
        30,
        "fresh status through the new gateway",
    )
    assert (after.pid, after.node) == (before.pid, before.node), "the actor never stopped"
    assert gaps_of(engine, camera.id) == [], "no gap: recording never stopped"

"""A real local Ray cluster for the cluster tests: a head node without camera slots (where the
API's gateway connects, as in production) and two recording nodes, one cluster per test module
(it takes 10-20 s to start). The nodes' processes inherit the module's `VMS_*` environment, as
`ray start` on a real node does: the camera actors read the database URL, the key and the data
dir from it."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from sqlalchemy import Engine, create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from registry.models import Camera, CameraStatus
from tests.conftest import FAST_PIPELINE, PG_URL, SAMPLE_MEDIA, TEST_KEY, make_settings
from tests.pipeline.conftest import wait_for
from vms.all_models import Base
from vms.core.config import Settings
from vms.core.db import make_engine, utcnow
from vms.pipeline.backend import PipelineBackend
from vms.pipeline.cluster.runner import remove_stale_channels
from vms.pipeline.slots import CameraStatusView

SLOTS_PER_NODE = 3
LEASE_TTL_S = 3.0
RECONCILE_S = 0.5
# Ray's node failure detection: health checks every 0.5 s, dead after 3 misses (the default is
# 3 s x 5; see the README for production).
HEALTH: dict[str, Any] = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
NODE: dict[str, Any] = {
    "num_cpus": 1,
    "object_store_memory": 80 * 1024 * 1024,
}


@dataclass
class LocalCluster:
    cluster: Any
    db_url: str
    data_dir: Path
    engine: Engine
    nodes: list[Any]

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self) -> Any:
        node = self.cluster.add_node(**NODE, resources={"camera_slots": SLOTS_PER_NODE})
        self.cluster.wait_for_nodes()
        self.nodes.append(node)
        return node

    def remove_node(self, node: Any) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def settings(self, namespace: str, **pipeline: Any) -> Settings:
        values = {
            "backend": "ray",
            "reconcile_interval_s": RECONCILE_S,
            "lease_ttl_s": LEASE_TTL_S,
            "ray_namespace": namespace,
            **pipeline,
        }
        return make_settings(
            self.data_dir,
            self.db_url,
            pipeline=FAST_PIPELINE.model_copy(update=values),
            ray_address=self.address,
        )


def _node_env(db_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        f"VMS_PIPELINE__{key.upper()}": str(value)
        for key, value in FAST_PIPELINE.model_dump().items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    env |= {
        "VMS_PROFILE": "test",
        "VMS_DATABASE_URL": db_url,
        "VMS_SECRET_KEY": TEST_KEY,
        "VMS_DATA_DIR": str(data_dir),
        "VMS_PIPELINE__LEASE_TTL_S": str(LEASE_TTL_S),
        "VMS_LOG_LEVEL": "INFO",
    }
    if SAMPLE_MEDIA is not None:
        env["VMS_SAMPLE_MEDIA_DIR"] = str(SAMPLE_MEDIA)
    return env


@pytest.fixture(scope="module")
def module_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database for the module (the cluster's nodes are started with its URL)."""
    if not PG_URL:
        url = f"sqlite:///{tmp_path_factory.mktemp('clusterdb') / 'cluster.db'}"
        eng = make_engine(url)
        Base.metadata.create_all(eng)
        eng.dispose()
        yield url
        return
    name = f"vms_cluster_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    Base.metadata.create_all(eng)
    eng.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def local_cluster(
    module_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    data_dir = tmp_path_factory.mktemp("clusterdata")
    saved = dict(os.environ)
    os.environ.update(_node_env(module_db_url, data_dir))
    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **NODE,
            "resources": {"camera_slots": 0},
            "include_dashboard": False,
            "_system_config": HEALTH,
        },
    )
    engine = make_engine(module_db_url)
    local = LocalCluster(cluster, module_db_url, data_dir, engine, [])
    try:
        for _ in range(2):
            local.add_node()
        ray.init(address=cluster.address, log_to_driver=False)
        print(f"local Ray cluster up in {time.monotonic() - started:.1f}s")
        yield local
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
        # Actors killed by Ray cannot unlink their live channels; a successor would.
        remove_stale_channels()
        engine.dispose()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def namespace(local_cluster: LocalCluster) -> Iterator[str]:
    """A Ray namespace of the test's own: its camera actors are killed afterwards, and its
    cameras decommissioned, so the next test's reconcile loop leaves them alone."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    with Session(local_cluster.engine) as session:
        session.execute(
            update(Camera)
            .where(Camera.status != CameraStatus.decommissioned)
            .values(status=CameraStatus.decommissioned, decommissioned_at=utcnow())
        )
        session.commit()
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == ns:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(entry["name"], namespace=ns), no_restart=True)


def view_where(
    sup: PipelineBackend, camera_id: int, test: Callable[[CameraStatusView], bool]
) -> Callable[[], CameraStatusView | None]:
    def check() -> CameraStatusView | None:
        view = sup.status(camera_id)
        return view if test(view) else None

    return check


def streaming(sup: PipelineBackend, camera_id: int) -> Callable[[], CameraStatusView | None]:
    return view_where(sup, camera_id, lambda v: v.state.value == "streaming")


def recording(sup: PipelineBackend, camera_id: int) -> Callable[[], CameraStatusView | None]:
    return view_where(
        sup,
        camera_id,
        lambda v: v.state.value == "streaming" and v.recording.value == "recording",
    )


__all__ = ["LocalCluster", "recording", "streaming", "view_where", "wait_for"]

"""create_app(): the one way in. Mounts each domain's router and installs the error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

import vms
from permits.router import router as permits_router
from registry.router import router as registry_router
from retention.router import router as retention_router
from retention.sweeper import RetentionSweeper
from sharing import service as sharing_service
from sharing.router import router as sharing_router
from vms.core import router as core_router
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker
from vms.core.deps import SessionDep
from vms.core.http import BodySizeLimit, install_error_handlers, install_log_redaction
from vms.core.schemas import HealthRead
from vms.core.throttle import Limits, LoginThrottle
from vms.export.router import router as export_router
from vms.export.worker import ExportWorker
from vms.pipeline.backend import PipelineBackend
from vms.pipeline.cluster.router import router as cluster_router
from vms.pipeline.cluster.supervisor import RaySupervisor
from vms.pipeline.relay import RelayService
from vms.pipeline.relay_router import router as relay_router
from vms.pipeline.router import metrics_router as pipeline_metrics_router
from vms.pipeline.router import router as pipeline_router
from vms.pipeline.supervisor import PipelineSupervisor
from vms.pipeline.viewing import UsedTickets, ViewingSessions
from vms.web import install as install_web

logger = logging.getLogger(__name__)


class BackgroundService(Protocol):
    """Something the server runs beside the API (pipeline supervisor, retention sweeper)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# Every domain's router, in the order FastAPI matches paths: `/cameras/near` (export) must come
# before the registry's `/cameras/{camera_id}`, which would otherwise take "near" for an id.
# Adding a domain: one line here (and one in _background_services if it runs in the background).
ROUTERS: tuple[APIRouter, ...] = (
    core_router.router,
    export_router,
    retention_router,
    registry_router,
    permits_router,
    pipeline_router,
    cluster_router,
    pipeline_metrics_router,
    sharing_router,  # issue 14
    relay_router,  # issue 14
)


def pipeline_backend(
    settings: Settings, box: SecretBox, *, overrides: dict[str, object] | None = None
) -> PipelineBackend:
    """Camera workers as child processes here (`local`), or as actors on a Ray cluster. The
    overrides (the sharing relay's socket) reach local workers only: the relay's socket is on
    this machine (docs/sharing.md)."""
    if settings.pipeline.backend == "ray":
        return RaySupervisor(settings)
    return PipelineSupervisor(settings, secret_box=box, worker_overrides=overrides)


def _background_services(app: FastAPI) -> list[BackgroundService]:
    services: list[BackgroundService] = []
    # Each domain that runs in the background adds its service here.
    services.append(
        RetentionSweeper(
            sessions=app.state.sessionmaker,
            data_dir=app.state.settings.data_dir,
            settings=app.state.settings.retention,
        )
    )
    services.append(ExportWorker(sessions=app.state.sessionmaker, settings=app.state.settings))
    overrides: dict[str, object] = {}
    settings = app.state.settings
    if settings.pipeline.enabled and settings.sharing.relay_enabled:
        # Issue 14: the RTSP relay for sharing agreements; workers feed it masked H.264.
        app.state.relay = RelayService(settings, app.state.sessionmaker)
        services.append(app.state.relay)
        overrides = {
            "relay_socket": app.state.relay.ingest_path,
            "relay_gop_frames": settings.sharing.gop_frames,
        }
    if app.state.settings.pipeline.enabled:
        # The routes find the running supervisor here (live frames, status, metrics).
        app.state.pipeline = pipeline_backend(
            app.state.settings, app.state.secret_box, overrides=overrides
        )
        services.append(app.state.pipeline)
    return services


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    run_background: bool = False,
) -> FastAPI:
    """Build the API. `run_background` starts the pipeline and the retention sweeper with the
    app's lifespan (the server does; most tests do not)."""
    settings = settings or Settings()
    settings.validate_for_startup()
    engine = engine or make_engine(settings.db_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = _background_services(app) if run_background else []
        for service in services:
            service.start()
        try:
            yield
        finally:
            for service in reversed(services):
                try:
                    service.stop()
                except Exception:
                    logger.exception("stopping %s failed", type(service).__name__)

    app = FastAPI(
        title="vms",
        version=vms.__version__,
        description="Privacy-first video management and camera registry.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.secret_box = SecretBox(settings.secret_key_bytes())
    # Who is watching what (playback sessions, spent live tickets): per API process.
    app.state.viewings = ViewingSessions()
    app.state.used_tickets = UsedTickets()
    app.state.login_throttle = LoginThrottle(Limits(**settings.login.model_dump()))
    # The register's recipients come from the sharing agreements in force (issue 14).
    app.state.shared_recipients = sharing_service.recipients_in_force
    install_error_handlers(app)
    install_log_redaction()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.get("/health", response_model=HealthRead, tags=["health"])
    def health(session: SessionDep) -> HealthRead | JSONResponse:
        """Liveness and database reachability; needs no token."""
        try:
            session.execute(text("SELECT 1"))
            db_status = "ok"
        except Exception as exc:
            logger.warning("health: database unreachable: %s", type(exc).__name__)
            body = HealthRead(status="degraded", version=vms.__version__, database="unreachable")
            return JSONResponse(status_code=503, content=body.model_dump())
        return HealthRead(status="ok", version=vms.__version__, database=db_status)

    for router in ROUTERS:
        app.include_router(router)
    # The web interface: page shells on this API, served by the same app.
    install_web(app)
    return app

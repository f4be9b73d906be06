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
from vms.core import router as core_router
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker
from vms.core.deps import SessionDep
from vms.core.http import BodySizeLimit, install_error_handlers
from vms.core.schemas import HealthRead
from vms.export.router import router as export_router
from vms.export.worker import ExportWorker
from vms.pipeline.router import metrics_router as pipeline_metrics_router
from vms.pipeline.router import router as pipeline_router
from vms.pipeline.supervisor import PipelineSupervisor

logger = logging.getLogger(__name__)


class BackgroundService(Protocol):
    """Something the server runs beside the API (pipeline supervisor, retention sweeper)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def _domain_routers() -> list[APIRouter]:
    routers: list[APIRouter] = [core_router.router]
    # Each domain mounts its own router here.
    routers.append(retention_router)
    routers.extend([registry_router, permits_router])
    # Before the registry's: `/cameras/near` must not be taken for `/cameras/{camera_id}`.
    routers.insert(1, export_router)
    routers.extend([pipeline_router, pipeline_metrics_router])
    return routers


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
    if app.state.settings.pipeline.enabled:
        # The routes find the running supervisor here (live frames, status, metrics).
        app.state.pipeline = PipelineSupervisor(app.state.settings, secret_box=app.state.secret_box)
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
    install_error_handlers(app)
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

    for router in _domain_routers():
        app.include_router(router)
    return app

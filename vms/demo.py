"""Demo cameras from the sample footage, for `make run` (`VMS_DEMO=1`) and `vms serve --demo`.

Creates (idempotently) a demo organisation with an in-force interest assessment and three
cameras, serves the footage as looping RTSP cameras from the GStreamer sample server (a child
process), and prints where to look. Without GStreamer it says how to install it and uses the
clips as `file` sources instead; without the sample footage it says so and adds no cameras.

    Skolgården, fasad   the facade case: all anonymised except a 3 m strip along the facade
    Entré, ansikten     faces detected and blurred (YuNet), recorded
    Gatan, trafik       live-only traffic camera: nothing of it is ever written to disk
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from sqlalchemy.orm import Session

from permits import service as permit_service
from permits.schemas import BasisKind, BasisStatus, LegalBasisCreate
from registry import service as registry_service
from registry.schemas import CameraCreate, CameraUpdate
from sample_streams import APT_HINT, RtspServerError, RtspServerProcess, gst_problem
from sample_streams.convert import ConversionError, FfmpegMissing, convert_cached
from vms.core import accounts, audit
from vms.core.auth import Principal, hash_password, principal_for
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker, session_scope, utcnow
from vms.core.models import Role, User
from vms.core.pagination import PageParams

if TYPE_CHECKING:
    from permits.models import LegalBasis
    from registry.models import Camera

logger = logging.getLogger(__name__)

ORG_NAME = "Demo kommun"
BASIS_TITLE = "Intresseavvägning: demo"
MANAGER_EMAIL = "demo-manager@vms.local"
OPERATOR_EMAIL = "demo-operator@vms.local"
DPO_EMAIL = "demo-dpo@vms.local"
POLICE_ORG_NAME = "Polisen (demo)"
# Who can sign in to the web interface in the demo, one per role.
WEB_USERS = (
    (ORG_NAME, MANAGER_EMAIL, Role.facility_manager),
    (ORG_NAME, "demo-dpo@vms.local", Role.dpo),
    (ORG_NAME, OPERATOR_EMAIL, Role.operator),
    (POLICE_ORG_NAME, "demo-police@vms.local", Role.police),
)
RTSP_PORT = 8554
CLIP_SECONDS = 30.0

# The camera hangs on the school's facade looking out over the yard: the facade runs just below
# the bottom edge of the picture. Ground in metres: x along the facade, y away from it.
FACADE_PLAN: dict[str, Any] = {
    "version": 1,
    "method": "pixelate",
    "default": "anonymise",
    "calibration": [
        {"image": [0.05, 0.95], "ground": [0.0, 0.0]},
        {"image": [0.95, 0.95], "ground": [9.0, 0.0]},
        {"image": [0.85, 0.10], "ground": [8.5, 9.0]},
        {"image": [0.15, 0.10], "ground": [0.5, 9.0]},
    ],
    "zones": [
        {
            "type": "facade_strip",
            "action": "keep",
            "facade": [[-3.0, -1.0], [12.0, -1.0]],
            "width_m": 3.0,
        }
    ],
}
FACES_PLAN: dict[str, Any] = {
    "version": 1,
    "method": "blur",
    "default": "keep",
    "detect": {"classes": ["face"], "in": "everywhere"},
}
TRAFFIC_PLAN: dict[str, Any] = {
    "version": 1,
    "method": "pixelate",
    "default": "keep",
    "zones": [  # the pavements and house fronts on both sides of the street
        {"type": "polygon", "action": "anonymise",
         "points": [[0.0, 0.0], [0.42, 0.0], [0.30, 0.55], [0.10, 1.0], [0.0, 1.0]]},
        {"type": "polygon", "action": "anonymise",
         "points": [[0.62, 0.0], [1.0, 0.0], [1.0, 1.0], [0.90, 1.0], [0.78, 0.50]]},
    ],
}  # fmt: skip


@dataclass(frozen=True)
class DemoCamera:
    mount: str
    name: str
    clip: str
    fps: int
    mode: str
    purpose: str
    purpose_category: str
    plan: dict[str, Any]


CAMERAS = (
    DemoCamera(
        "/skolgarden",
        "Skolgården, fasad",
        "car-detection.mp4",
        12,
        "live_and_recording",
        "Skydd mot skadegörelse på fasaden; allt utom 3 m längs fasaden anonymiseras",
        "property_protection",
        FACADE_PLAN,
    ),
    DemoCamera(
        "/entre",
        "Entré, ansikten",
        "one-by-one-person-detection.mp4",
        10,
        "live_and_recording",
        "Entrékontroll; ansikten maskeras automatiskt",
        "safety",
        FACES_PLAN,
    ),
    DemoCamera(
        "/gatan",
        "Gatan, trafik",
        "market_street_1906_awbc_sample.mp4",
        15,
        "live",
        "Trafikövervakning, endast direktbild",
        "traffic_management",
        TRAFFIC_PLAN,
    ),
)


class Demo:
    """start() before the server runs, stop() after it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: RtspServerProcess | None = None

    def start(self) -> None:
        if self.settings.sample_media_dir is None:
            typer.echo(
                "demo: VMS_SAMPLE_MEDIA_DIR is not set (make run sets it to "
                "../shared/sample_media). Starting without demo cameras."
            )
            return
        videos = self.settings.sample_media_dir / "video"
        missing = [c.clip for c in CAMERAS if not (videos / c.clip).is_file()]
        if missing:
            typer.echo(
                f"demo: no sample footage at {videos} (missing {', '.join(missing)}); "
                "set VMS_SAMPLE_MEDIA_DIR. Starting without demo cameras."
            )
            return
        sources = self._rtsp_sources(videos) or self._file_sources(videos)
        token, ids = self._register(sources)
        self._announce(token, ids)
        self._announce_web(self._web_users())

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- sources -----------------------------------------------------------------------------

    def _rtsp_sources(self, videos: Path) -> dict[str, dict[str, Any]] | None:
        problem = gst_problem()
        if problem is not None:
            typer.echo(f"demo: {problem}")
            typer.echo("demo: using the clips as file sources instead of RTSP cameras")
            return None
        cache = self.settings.data_dir / "demo"
        try:
            clips = {
                c.mount: convert_cached(videos / c.clip, cache, fps=c.fps, seconds=CLIP_SECONDS)
                for c in CAMERAS
            }
        except (FfmpegMissing, ConversionError) as exc:
            typer.echo(f"demo: cannot convert the clips ({exc}); install with: {APT_HINT}")
            return None
        # FILE@FPS: the server paces each clip at its own rate.
        mounts = {c.mount: f"{clips[c.mount]}@{c.fps}" for c in CAMERAS}
        for port in (RTSP_PORT, 0):
            try:
                self.server = RtspServerProcess(mounts, port=port).start()
                break
            except RtspServerError as exc:
                logger.info("demo RTSP server on port %s failed: %s", port, exc)
        if self.server is None:
            typer.echo("demo: the RTSP server did not start; using file sources")
            return None
        typer.echo(f"demo: RTSP cameras at rtsp://127.0.0.1:{self.server.port}/...")
        return {c.mount: {"kind": "rtsp", "url": self.server.url(c.mount)} for c in CAMERAS}

    @staticmethod
    def _file_sources(videos: Path) -> dict[str, dict[str, Any]]:
        return {c.mount: {"kind": "file", "path": str(videos / c.clip)} for c in CAMERAS}

    # -- registry ----------------------------------------------------------------------------

    def _register(self, sources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, int]]:
        settings = self.settings
        box = SecretBox(settings.secret_key_bytes())
        roots = settings.file_source_roots
        engine = make_engine(settings.db_url)
        ids: dict[str, int] = {}
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                org = accounts.get_organisation_by_name(session=session, name=ORG_NAME)
                if org is None:
                    org = accounts.create_organisation(session=session, actor=None, name=ORG_NAME)
                manager = _user(session, org.id, MANAGER_EMAIL, Role.facility_manager)
                operator = _user(session, org.id, OPERATOR_EMAIL, Role.operator)
                actor = principal_for(session, manager)
                # The DPO decides the basis; the facility manager registers the cameras.
                dpo = _user(session, org.id, DPO_EMAIL, Role.dpo)
                basis = _basis(session, principal_for(session, dpo), org.id)
                for cam in CAMERAS:
                    row = _camera(
                        session, actor, box, roots, org.id, basis.id, cam, sources[cam.mount]
                    )
                    ids[cam.name] = row.id
                token, _ = accounts.create_token_for(
                    session=session, actor=None, user=operator, ttl_hours=settings.token_ttl_hours
                )
        finally:
            engine.dispose()
        return token, ids

    def _announce(self, token: str, ids: dict[str, int]) -> None:
        root = f"http://{self.settings.host}:{self.settings.port}"
        auth = '-H "Authorization: Bearer $TOKEN"'
        echo = typer.echo
        echo("")
        echo(f"Demo: {len(ids)} cameras in {ORG_NAME!r}. An operator's token (valid "
             f"{self.settings.token_ttl_hours:g} h):")  # fmt: skip
        echo(f"  export TOKEN={token}")
        for name, camera_id in ids.items():
            cam = f"{root}/api/v1/cameras/{camera_id}"
            echo(f"  {name} (camera {camera_id})")
            echo(f"    status:    curl -s {auth} {cam}/status")
            echo(f"    snapshot:  curl -s {auth} {cam}/snapshot.jpg -o camera{camera_id}.jpg")
            echo(f"    live view: curl -s -X POST {auth} {cam}/live-ticket   then open")
            echo(f"               {root}<live_url> in a browser (or an <img src>)")
        echo(f"  recordings:   curl -s {auth} '{root}/api/v1/recordings?camera_id=<id>'")
        echo(f"  metrics (admin token): {root}/metrics   API docs: {root}/docs")
        echo("")

    # -- the web interface ---------------------------------------------------------------------

    def _web_users(self) -> str:
        """One demo user per role (police in an organisation of their own), all with one fresh
        password, so that the web interface can be tried as each of them."""
        password = secrets.token_urlsafe(9)
        engine = make_engine(self.settings.db_url)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                for org_name, email, role in WEB_USERS:
                    org = accounts.get_organisation_by_name(session=session, name=org_name)
                    if org is None:
                        org = accounts.create_organisation(
                            session=session, actor=None, name=org_name
                        )
                    user = _user(session, org.id, email, role)
                    # A new password at every demo start: the demo users are throwaway (dev only).
                    user.password_hash = hash_password(password)
                    audit.record(
                        session,
                        action="user.update",
                        organisation_id=org.id,
                        target_type="user",
                        target_id=user.id,
                        details={"changes": {"password": "changed"}, "via": "demo"},
                    )
        finally:
            engine.dispose()
        return password

    def _announce_web(self, password: str) -> None:
        root = f"http://{self.settings.host}:{self.settings.port}"
        typer.echo(f"Web interface: {root}/  sign in with the password {password} as")
        for _, email, role in WEB_USERS:
            typer.echo(f"  {email:<26} {role.value}")
        typer.echo("")


def _user(session: Session, org_id: int, email: str, role: Role) -> User:
    user = accounts.get_user_by_email(session=session, email=email)
    if user is None:
        user = accounts.create_user(
            session=session,
            actor=None,
            email=email,
            organisation_id=org_id,
            role=role,
            name=f"Demo {role.value}",
        )
    return user


def _basis(session: Session, actor: Principal, org_id: int) -> LegalBasis:
    rows, _ = permit_service.list_bases(
        session=session,
        principal=actor,
        page=PageParams(limit=500, offset=0),
        organisation_id=org_id,
        status=BasisStatus.in_force,
    )
    for row in rows:
        if row.title == BASIS_TITLE:
            return row
    return permit_service.create_basis(
        session=session,
        actor=actor,
        data=LegalBasisCreate(
            kind=BasisKind.assessment,
            status="in_force",
            title=BASIS_TITLE,
            purpose="Demonstration av maskerad direktbild och inspelning",
            less_intrusive_measures="Demo: inga verkliga personer övervakas",
            covered_area="Exempelfilmer",
            decided_by="Demo",
            decided_at=utcnow() - dt.timedelta(days=1),
            review_by=(utcnow() + dt.timedelta(days=365)).date(),
            live_view_allowed=True,
            recording_allowed=True,
            max_retention_hours=24,
        ),
    )


def _camera(
    session: Session,
    actor: Principal,
    box: SecretBox,
    roots: tuple[Path, ...],
    org_id: int,
    basis_id: int,
    cam: DemoCamera,
    source: dict[str, Any],
) -> Camera:
    existing, _ = registry_service.list_cameras(
        session=session,
        principal=actor,
        page=PageParams(limit=50, offset=0),
        organisation_id=org_id,
        q=cam.name,
    )
    for found in existing:
        if found.name == cam.name:
            # The RTSP port (or the fallback to files) may differ from the last run.
            return registry_service.update_camera(
                session=session,
                actor=actor,
                box=box,
                camera_id=found.id,
                data=CameraUpdate.model_validate({"source": source, "mask_plan": cam.plan}),
                file_roots=roots,
            )
    return registry_service.create_camera(
        session=session,
        actor=actor,
        box=box,
        data=CameraCreate.model_validate(
            {
                "name": cam.name,
                "purpose": cam.purpose,
                "purpose_category": cam.purpose_category,
                "mode": cam.mode,
                "retention_hours": 24,
                "legal_basis_id": basis_id,
                "source": source,
                "mask_plan": cam.plan,
                "signage": {"posted": True, "text": "Kamerabevakning (demo)"},
                "location": {"address": "Demogatan 1, Stockholm", "lat": 59.33, "lon": 18.06},
            }
        ),
        file_roots=roots,
    )

"""Settings: one object, read from `VMS_*` variables, validated at start-up."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vms.core.errors import ConfigError
from vms.core.netpolicy import DEFAULT_CAMERA_NETWORKS, parse_networks

# Migrations live beside the packages (alembic/ at the top of the source tree).
REPO_ROOT = Path(__file__).resolve().parents[2]


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Where camera workers run: `local` (child processes of this server) or `ray` (actors on
    # a Ray cluster, VMS_RAY_ADDRESS; see vms/pipeline/cluster).
    backend: Literal["local", "ray"] = "local"
    segment_seconds: float = Field(10.0, gt=0.5, le=3600)
    open_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    stall_seconds: float = Field(10.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    restart_budget: int = Field(20, ge=1, description="restarts allowed per budget window")
    restart_window_s: float = Field(600.0, gt=0)
    jpeg_quality: int = Field(80, ge=10, le=100)
    live_fps: float = Field(10.0, gt=0, le=60)
    encoder_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = (
        Field("ultrafast", description="x264 preset of recorded segments")
    )
    encoder_crf: int = Field(23, ge=0, le=51, description="x264 quality (lower: better, bigger)")
    encoder_threads: int = Field(1, ge=0, le=16, description="x264 threads per camera (0: auto)")
    decoder_threads: int = Field(1, ge=0, le=16, description="decoder threads per camera")
    frame_queue: int = Field(
        8, ge=1, le=250, description="decoded frames a camera may wait behind masking/encoding"
    )
    frame_batch: int = Field(
        4,
        ge=1,
        le=25,
        description="frames masked and encoded back to back while nobody watches live "
        "(1: frame by frame; more costs up to that many frame intervals of latency to disk)",
    )
    camera_networks: tuple[str, ...] = Field(
        DEFAULT_CAMERA_NETWORKS,
        description="CIDRs camera hosts (RTSP, ONVIF, probes) must resolve into",
    )
    onvif_stream_hosts: tuple[str, ...] = Field(
        (), description="hosts besides the device itself an ONVIF stream URI may point at"
    )
    passthrough_verify_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="passthrough cameras: check the masks on a keyframe at least this often "
        "(the camera's keyframe interval is the floor)",
    )
    passthrough_settle_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="after pushing masks, how long a camera may take to draw them before a "
        "failed check counts",
    )
    passthrough_fallback: Literal["transcode", "block"] = Field(
        "transcode",
        description="a passthrough camera whose check failed or that cannot draw its plan: "
        "record it through transcoding, or stop it until someone retries",
    )
    # The Ray backend: how often the running actors are made to match the registry, how long
    # a camera's lease lives without renewal, the Ray namespace of the camera actors.
    reconcile_interval_s: float = Field(1.0, gt=0, le=300)
    lease_ttl_s: float = Field(10.0, gt=0.5, le=600)
    ray_namespace: str = Field("vms", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("camera_networks")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        try:
            parse_networks(v)
        except ValueError as exc:
            raise ValueError(f"not a list of CIDR networks: {exc}") from exc
        return v


class LoginSettings(BaseModel):
    """Sign-in throttling (per API process)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_failures: int = Field(5, ge=1, description="failures per account per window")
    address_failures: int = Field(20, ge=1, description="failures per client address per window")
    window_s: float = Field(900.0, gt=0)
    lockout_s: float = Field(
        300.0, gt=0, description="refusal once a limit is hit (short: a lockout is also a DoS)"
    )
    summary_interval_s: float = Field(
        60.0, gt=0, description="failures against unknown accounts: one audit entry per interval"
    )


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_interval_s: float = Field(300.0, gt=0)
    batch_size: int = Field(500, ge=1)
    disk_free_floor_bytes: int = Field(1_000_000_000, ge=0)


class SharingSettings(BaseModel):
    """Issue 14: the RTSP relay that serves masked live video to sharing-agreement recipients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relay_enabled: bool = True
    rtsp_host: str = Field("127.0.0.1", description="where the relay listens")
    rtsp_port: int = Field(8554, ge=0, le=65535, description="0 picks a free port")
    rtsp_public_host: str | None = Field(
        None, description="host name recipients connect to (default: rtsp_host)"
    )
    recheck_s: float = Field(2.0, gt=0, le=30, description="open sessions re-checked this often")
    session_ttl_hours: float = Field(12.0, gt=0, description="longest life of stream credentials")
    idle_timeout_s: float = Field(
        120.0, gt=0, description="credentials nobody plays with for this long are withdrawn"
    )
    gop_frames: int = Field(25, ge=1, le=300, description="keyframe interval of relayed H.264")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VMS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    profile: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    database_url: str | None = None
    secret_key: SecretStr | None = Field(
        None, description="Fernet key (urlsafe base64, 32 bytes) for secrets at rest"
    )
    models_dir: Path | None = Field(
        None, description="detector model files; default: <sample_media_dir>/models"
    )
    sample_media_dir: Path | None = Field(
        None, description="demo footage (video/*.mp4); also a root for `file` camera sources"
    )
    import_dir: Path | None = Field(
        None, description="another root for `file` sources: video staged for import"
    )
    token_ttl_hours: float = Field(12.0, gt=0)
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    admin_email: str = "admin@vms.local"
    export_ttl_hours: float = Field(168.0, gt=0)
    demo: bool = False
    log_level: str = "INFO"
    # The web interface's police map; empty: no tiles, the plain coordinate view only (closed
    # networks). The page's Content-Security-Policy allows this origin and no other.
    map_tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    # The Ray cluster the `ray` pipeline backend joins (`auto`, `host:port`); None: auto.
    ray_address: str | None = None
    pipeline: PipelineSettings = PipelineSettings()
    retention: RetentionSettings = RetentionSettings()
    login: LoginSettings = LoginSettings()
    sharing: SharingSettings = SharingSettings()  # issue 14

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("VMS_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if v is not None and v.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; the bare scheme would pick psycopg2.
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v

    @field_validator("map_tile_url")
    @classmethod
    def _tile_template(cls, v: str) -> str:
        if v and not (
            v.startswith(("https://", "http://")) and all(k in v for k in ("{z}", "{x}", "{y}"))
        ):
            raise ValueError("VMS_MAP_TILE_URL must be an http(s) URL with {z}, {x} and {y}")
        return v

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vms.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path | None:
        if self.models_dir is not None:
            return self.models_dir
        return self.sample_media_dir / "models" if self.sample_media_dir is not None else None

    @property
    def file_source_roots(self) -> tuple[Path, ...]:
        """Where `file` camera sources may point: the sample media and the import folder, never
        the data dir (it holds every organisation's recordings). Checked at start-up."""
        return tuple(p.resolve() for p in (self.sample_media_dir, self.import_dir) if p)

    def secret_key_bytes(self) -> bytes:
        """The key that encrypts credentials and the signing key at rest (read once)."""
        return self._secret_key

    @cached_property
    def _secret_key(self) -> bytes:
        # Outside production a key is generated once and kept in the data folder, so a newcomer
        # needs no set-up; production refuses to start without an explicit key.
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value().encode()
            _check_fernet_key(key)
            return key
        if self.profile == "prod":
            raise ConfigError(
                "VMS_SECRET_KEY must be set when VMS_PROFILE=prod (generate one with: vms keygen)"
            )
        path = self.data_dir / "secret.key"
        if path.exists():
            key = path.read_bytes().strip()
            _check_fernet_key(key)
            return key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = generate_key()
        path.write_bytes(key)
        path.chmod(0o600)
        return key

    def validate_for_startup(self) -> None:
        self.secret_key_bytes()
        data = self.data_dir.resolve()
        for root in self.file_source_roots:
            if root == data or root.is_relative_to(data) or data.is_relative_to(root):
                raise ConfigError(
                    f"file-source root {root} overlaps the data dir {data}: it would expose "
                    "recordings as camera sources (use a separate folder for "
                    "VMS_SAMPLE_MEDIA_DIR / VMS_IMPORT_DIR)"
                )
        if self.profile == "prod" and self.database_url is None:
            raise ConfigError("VMS_DATABASE_URL must be set when VMS_PROFILE=prod")
        if self.pipeline.backoff_max_s < self.pipeline.backoff_initial_s:
            raise ConfigError("VMS_PIPELINE__BACKOFF_MAX_S must be >= BACKOFF_INITIAL_S")


def generate_key() -> bytes:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32))


def _check_fernet_key(key: bytes) -> None:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("VMS_SECRET_KEY is not urlsafe base64") from exc
    if len(raw) != 32:
        raise ConfigError("VMS_SECRET_KEY must decode to 32 bytes (generate one: vms keygen)")

"""The `vms` command."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
from typing import Annotated

import typer
from sqlalchemy import select

from registry.cli import registry_app
from retention.cli import retention_app
from vms.cli_mask import mask
from vms.core import accounts, audit, migrate, signing
from vms.core.cli import cli_session, fail, load_settings
from vms.core.config import Settings, generate_key
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker, session_scope
from vms.core.models import Role, User
from vms.export.cli import export_app
from vms.pipeline.cli import footage_app

app = typer.Typer(help="vms: privacy-first video management.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
orgs_app = typer.Typer(help="Organisations.", no_args_is_help=True)
users_app = typer.Typer(help="Users.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.command("mask")(mask)
app.add_typer(db_app, name="db")
app.add_typer(orgs_app, name="orgs")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(export_app, name="export")
app.add_typer(retention_app, name="retention")
app.add_typer(registry_app, name="registry")
app.add_typer(footage_app, name="footage")

logger = logging.getLogger("vms")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    settings = load_settings()
    migrate.upgrade(settings.db_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def keygen() -> None:
    """Print a new secret key for VMS_SECRET_KEY."""
    typer.echo(generate_key().decode())


@orgs_app.command("create")
def orgs_create(name: str, org_number: Annotated[str | None, typer.Option()] = None) -> None:
    """Create an organisation."""
    settings = load_settings()
    if not name.strip():
        fail("organisation name must not be empty")
    with cli_session(settings) as session:
        org = accounts.create_organisation(
            session=session, actor=None, name=name.strip(), org_number=org_number
        )
        typer.echo(f"organisation {org.id} {org.name!r} created")


@users_app.command("create")
def users_create(
    org: Annotated[str, typer.Option(help="organisation name")],
    role: Annotated[str, typer.Option(help="admin|facility_manager|dpo|operator|police")],
    email: Annotated[str, typer.Option()],
    name: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Create a user; prints a fresh API token."""
    settings = load_settings()
    try:
        role_value = Role(role)
    except ValueError:
        fail(f"unknown role {role!r}; choose one of: {', '.join(r.value for r in Role)}")
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        fail(f"invalid email {email!r}")
    password: str | None = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if len(password) < 8:
            fail("password must be at least 8 characters")
    with cli_session(settings) as session:
        organisation = accounts.get_organisation_by_name(session=session, name=org)
        if organisation is None:
            fail(f"no organisation named {org!r} (create it with: vms orgs create {org!r})")
        user = accounts.create_user(
            session=session,
            actor=None,
            email=email,
            organisation_id=organisation.id,
            role=role_value,
            name=name,
            password=password,
        )
        token, row = accounts.create_token_for(
            session=session, actor=None, user=user, ttl_hours=settings.token_ttl_hours
        )
        out = {
            "id": user.id,
            "email": user.email,
            "role": user.role.value,
            "organisation": organisation.name,
            "organisation_id": organisation.id,
            "token": token,
            "token_expires_at": row.expires_at.isoformat(),
        }
    if as_json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"user {out['id']} {out['email']} ({out['role']}) created")
        typer.echo(f"token: {token}")


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="SEQ:HASH of an anchored head (from `vms audit head` or a DPO report): fail "
            "if the log no longer holds it",
        ),
    ] = None,
) -> None:
    """Walk the audit hash chain; exit 1 naming the first broken entry (or a lost anchor)."""
    settings = load_settings()
    expect: tuple[int, str] | None = None
    if expect_head is not None:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            fail(
                f"--expect-head must be SEQ:HASH (a number and 64 hex digits), got {expect_head!r}"
            )
        expect = (int(seq), digest.lower())
    with cli_session(settings) as session:
        report = audit.verify_chain(session)
        problem = audit.check_anchor(session, *expect) if report.ok and expect else None
    if not report.ok:
        fail(f"audit chain broken after {report.checked} good entries: {report.problem}")
    if problem is not None:
        fail(problem)
    anchored = f", holds the anchored seq {expect[0]}" if expect else ""
    typer.echo(f"audit chain OK: {report.checked} entries{anchored}")


@audit_app.command("head")
def audit_head(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print the chain's newest entry, signed with the installation key: keep it outside the
    database (with the DPO's reports) and check it later with `vms audit verify --expect-head`."""
    settings = load_settings()
    with cli_session(settings) as session:
        last = audit.head(session)
    if last is None:
        fail("the audit log is empty")
    try:
        key, _ = signing.load_or_create(
            data_dir=settings.data_dir, box=SecretBox(settings.secret_key_bytes())
        )
    except signing.SigningKeyError as exc:
        fail(str(exc))
    statement = last.statement()
    signature = base64.b64encode(key.sign(statement)).decode()
    out = {
        "seq": last.seq,
        "hash": last.hash,
        "at": last.at.isoformat(),
        "statement": statement.decode(),
        "signature": signature,
        "key_fingerprint_sha256": key.fingerprint,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"head: {last.seq}:{last.hash}")
    typer.echo(f"signature (Ed25519, key {key.fingerprint[:16]}...): {signature}")


def ensure_admin(settings: Settings) -> None:
    """First start: create an administrator and say how to get a token."""
    engine = make_engine(settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            if session.scalar(select(User.id).where(User.role == Role.admin).limit(1)):
                return
            org = accounts.get_organisation_by_name(session=session, name="vms")
            if org is None:
                org = accounts.create_organisation(session=session, actor=None, name="vms")
            password = secrets.token_urlsafe(12)
            accounts.create_user(
                session=session,
                actor=None,
                email=settings.admin_email,
                organisation_id=org.id,
                role=Role.admin,
                name="Administrator",
                password=password,
            )
    finally:
        engine.dispose()
    base = f"http://{settings.host}:{settings.port}"
    typer.echo("")
    typer.echo("First start: created the administrator")
    typer.echo(f"  email:    {settings.admin_email}")
    typer.echo(f"  password: {password}   (shown once; change it with PATCH /api/v1/users/ID)")
    typer.echo("Get a token with:")
    typer.echo(
        f"  curl -s -X POST {base}/api/v1/auth/token -H 'content-type: application/json' "
        f'-d \'{{"email":"{settings.admin_email}","password":"{password}"}}\''
    )
    typer.echo("")


@app.command()
def serve(
    migrate_db: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
    demo: Annotated[
        bool, typer.Option("--demo", help="add demo cameras from the sample footage (VMS_DEMO=1)")
    ] = False,
) -> None:
    """Run the API with the pipeline and the retention sweeper."""
    import uvicorn

    from vms.api import create_app

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate_db:
        migrate.upgrade(settings.db_url)
    ensure_admin(settings)
    demo_cameras = None
    if demo or settings.demo:
        from vms.demo import Demo

        demo_cameras = Demo(settings)
        demo_cameras.start()
    try:
        application = create_app(settings, run_background=True)
        typer.echo(f"vms listening on http://{settings.host}:{settings.port} (docs at /docs)")
        uvicorn.run(application, host=settings.host, port=settings.port, log_level="info")
    finally:
        if demo_cameras is not None:
            demo_cameras.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

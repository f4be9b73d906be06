"""`vms registry ...`: import a spreadsheet register (registered in vms.cli)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from vms.core.cli import cli_session, fail, load_settings

registry_app = typer.Typer(help="The camera registry.", no_args_is_help=True)


@registry_app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV file (UTF-8, ',' or ';' separated)")],
    org: Annotated[str, typer.Option(help="organisation name")],
    dry_run: Annotated[bool, typer.Option(help="check every row, create nothing")] = False,
) -> None:
    """Import cameras from a CSV register: all rows or none (columns: docs/registry.md)."""
    from registry import importer
    from vms.core import accounts
    from vms.core.crypto import SecretBox
    from vms.core.errors import InvalidInput

    settings = load_settings()
    try:
        content = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    box = SecretBox(settings.secret_key_bytes())
    started = time.perf_counter()
    errors: list[str] = []
    summary = ""
    result = None
    with cli_session(settings) as session:
        organisation = accounts.get_organisation_by_name(session=session, name=org)
        if organisation is None:
            fail(f"no organisation named {org!r} (create it with: vms orgs create {org!r})")
        try:
            result = importer.import_cameras(
                session=session,
                actor=None,
                box=box,
                file_roots=settings.file_source_roots,
                organisation_id=organisation.id,
                content=content,
                dry_run=dry_run,
            )
        except InvalidInput as exc:
            errors = [item.msg for item in exc.items]
            summary = exc.msg
            session.rollback()
    if result is None:
        for line in errors:
            typer.echo(f"error: {line}", err=True)
        fail(summary)
    elapsed = time.perf_counter() - started
    if result.dry_run:
        typer.echo(f"{result.rows} rows OK (dry run: nothing imported) in {elapsed:.2f} s")
    else:
        typer.echo(
            f"imported {result.created} cameras ({result.sites_created} new sites) into "
            f"{organisation.name!r} in {elapsed:.2f} s"
        )

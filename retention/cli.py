"""`vms retention ...`: sweep, check, receipts, report (registered in vms.cli)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from vms.core.cli import cli_session, fail, load_settings

retention_app = typer.Typer(
    help="Footage retention: sweep, reconciliation, deletion receipts, DPO report.",
    no_args_is_help=True,
)

_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(value: str | None, option: str) -> dt.datetime | None:
    """An aware ISO 8601 time (`2025-03-01T00:00:00+01:00`, `...Z`) or an age (`7d`, `12h`)."""
    if value is None:
        return None
    m = _RELATIVE.match(value.strip())
    if m:
        from vms.core.db import utcnow

        return utcnow() - dt.timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option}: expected an ISO 8601 time with a zone or an age like 7d, got {value!r}")
    if parsed.tzinfo is None:
        fail(f"{option}: {value!r} has no time zone; add one (e.g. Z or +01:00)")
    return parsed.astimezone(dt.UTC)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


@retention_app.command("sweep")
def sweep_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would go; change nothing")
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="segments per transaction (default: settings)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Delete footage past retention (never under hold), with a receipt per file."""
    from retention import service

    settings = load_settings()
    with cli_session(settings) as session:
        report = service.sweep(
            session=session,
            data_dir=settings.data_dir,
            batch_size=batch_size or settings.retention.batch_size,
            dry_run=dry_run,
            disk_free_floor_bytes=settings.retention.disk_free_floor_bytes,
        )
    if report.skipped:
        fail(report.skipped)
    if as_json:
        typer.echo(json.dumps(_jsonable(report)))
        return
    if dry_run:
        for p in report.planned:
            typer.echo(
                f"would delete segment {p.segment_id} camera {p.camera_id} "
                f"{p.start.isoformat()} .. {p.end.isoformat()} ({p.rule})"
            )
        typer.echo(
            f"dry run: {len(report.planned)} segments would be deleted "
            f"({sum(p.size_bytes for p in report.planned)} bytes); "
            f"{report.held_past_retention} past retention kept by legal holds"
        )
        return
    typer.echo(
        f"deleted {report.deleted} segments ({report.deleted_bytes} bytes) in "
        f"{report.seconds:.2f}s; {report.recovered} finished from an interrupted run; "
        f"{report.pressure_deleted} for disk pressure; "
        f"{report.held_past_retention} past retention kept by legal holds"
    )
    if report.shortened:
        cams = ", ".join(
            f"{c} (until {u.isoformat()})" for c, u in sorted(report.shortened.items())
        )
        typer.echo(f"warning: disk pressure has shortened retention of cameras {cams}", err=True)
    if report.unlink_errors:
        fail(f"{report.unlink_errors} files could not be deleted (see the log); rerun later")


@retention_app.command("check")
def check_cmd(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="delete orphans past retention (with receipts), re-index younger ones, "
            "mark rows without files missing",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Compare the recordings folder with the index; exit 1 if they disagree (and stay so)."""
    from retention import service

    settings = load_settings()
    with cli_session(settings) as session:
        report = service.check(session=session, data_dir=settings.data_dir, repair=repair)
    if as_json:
        typer.echo(
            json.dumps({**_jsonable(report), "ok": report.ok, "unresolved": report.unresolved})
        )
    else:
        for o in report.orphan_files:
            typer.echo(f"file without index row: {o.path} ({o.size_bytes} bytes): {o.action}")
        for p in report.stale_partials:
            typer.echo(f"stale partial file: {p.path}: {p.action}")
        for d in report.dangling_rows:
            typer.echo(f"index row without file: segment {d.segment_id} {d.path}: {d.action}")
        for f in report.foreign_files:
            typer.echo(f"not a recording (left alone): {f}")
        typer.echo(
            f"checked {report.files} files and {report.rows} index rows; "
            f"{len(report.orphan_files)} orphan files, {len(report.dangling_rows)} rows without "
            f"files, {len(report.stale_partials)} stale partials, {report.known_missing} known "
            f"missing; {report.unresolved} unresolved"
        )
    if report.unresolved:
        raise typer.Exit(1)


@retention_app.command("receipts")
def receipts_cmd(
    camera: Annotated[int | None, typer.Option("--camera", help="camera id")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO time with zone, or an age: 7d, 12h")
    ] = None,
    until: Annotated[str | None, typer.Option(help="ISO time with zone, or an age")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List deletion receipts: the proof that footage was deleted, when, and under which rule."""
    from retention import service

    settings = load_settings()
    since_at, until_at = parse_when(since, "--since"), parse_when(until, "--until")
    with cli_session(settings) as session:
        rows, total = service.list_receipts(
            session=session,
            principal=None,
            camera_id=camera,
            since=since_at,
            until=until_at,
            limit=limit,
        )
    for r in rows:
        if as_json:
            typer.echo(json.dumps(_jsonable(r)))
        else:
            seg = f"segment {r.segment_id}" if r.segment_id is not None else "unindexed file"
            start = r.start.isoformat() if r.start else "?"
            span = f"{start} .. {r.end.isoformat() if r.end else '?'}"
            typer.echo(
                f"{r.at.isoformat()} camera {r.camera_id} {seg} {span} sha256 {r.sha256} "
                f"rule: {r.rule} [audit seq {r.seq}]"
            )
    if not as_json:
        more = f" (showing {len(rows)})" if total > len(rows) else ""
        typer.echo(f"{total} receipts{more}")


@retention_app.command("report")
def report_cmd(
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html")] = "json",
    since: Annotated[str | None, typer.Option(help="period start (default: 30 days ago)")] = None,
    until: Annotated[str | None, typer.Option(help="period end (default: now)")] = None,
    organisation: Annotated[int | None, typer.Option("--org", help="organisation id")] = None,
    camera: Annotated[int | None, typer.Option("--camera", help="camera id")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write to a file")] = None,
) -> None:
    """The DPO retention report (same content as GET /api/v1/reports/retention)."""
    from retention import report as report_service
    from retention import service

    if fmt not in ("json", "csv", "html"):
        fail(f"--format must be json, csv or html, not {fmt!r}")
    settings = load_settings()
    since_at, until_at = parse_when(since, "--since"), parse_when(until, "--until")
    with cli_session(settings) as session:
        report = service.retention_report(
            session=session,
            principal=None,
            since=since_at,
            until=until_at,
            organisation_id=organisation,
            camera_id=camera,
        )
    if fmt == "csv":
        text = report_service.to_csv(report)
    elif fmt == "html":
        text = report_service.to_html(report)
    else:
        text = report.model_dump_json(indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    typer.echo(f"report written to {output} ({len(report.cameras)} cameras)")

"""`vms footage ...`: work on recorded footage that needs the pipeline (registered in vms.cli)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vms.core.cli import cli_session, fail, load_settings

footage_app = typer.Typer(
    help="Recorded footage: re-mask quarantined segments.", no_args_is_help=True
)


@footage_app.command("remask")
def remask_cmd(
    camera: Annotated[int | None, typer.Option(help="only this camera's segments")] = None,
    segment: Annotated[
        list[int] | None, typer.Option(help="only these segment ids (repeat the option)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list them; change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Mask quarantined passthrough segments with the plan they were recorded under, so they
    can be played and exported (the camera's unmasked file is replaced; audited)."""
    from vms.pipeline import remask

    settings = load_settings()
    models = settings.resolved_models_dir
    with cli_session(settings) as session:
        done, failed = remask.remask(
            session=session,
            data_dir=settings.data_dir,
            camera_id=camera,
            segment_ids=segment or (),
            models_dir=str(models) if models is not None else None,
            dry_run=dry_run,
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "remasked": [
                        {
                            "segment_id": r.segment_id,
                            "camera_id": r.camera_id,
                            "path": r.path,
                            "frames": r.frames,
                            "sha256": r.sha256,
                        }
                        for r in done
                    ],
                    "failed": [{"segment_id": i, "error": e} for i, e in failed],
                }
            )
        )
    else:
        verb = "would re-mask" if dry_run else "re-masked"
        for r in done:
            typer.echo(f"{verb} segment {r.segment_id} (camera {r.camera_id}, {r.path})")
        typer.echo(f"{len(done)} segment(s) {verb}, {len(failed)} failed")
    if failed:
        fail("; ".join(f"segment {i}: {e}" for i, e in failed))

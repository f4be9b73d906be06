"""`vms mask`: anonymise a video or image file with a mask plan (registered in vms.cli)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from masking import MaskingError, ModelError, PlanError
from masking.tool import MaskToolError, is_image, load_plan, mask_image, mask_video, preview_file


def mask(
    input: Path = typer.Argument(
        ..., help="Video (any format FFmpeg reads) or image to anonymise."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Masked MP4/H.264 or image to write."),
    plan: Path = typer.Option(..., "--plan", help="Mask plan JSON file."),
    preview: bool = typer.Option(
        False, "--preview", help="Write a picture of the plan over the (first) frame instead."
    ),
    models_dir: Path | None = typer.Option(
        None,
        "--models-dir",
        envvar="VMS_MODELS_DIR",
        help="Detector model files (needed for plans with detectors).",
    ),
    detect_every: int = typer.Option(
        1, "--detect-every", min=1, help="Run detectors every Nth frame."
    ),
) -> None:
    """Anonymise a video or image file with a mask plan."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    err = Console(stderr=True)
    if models_dir is None and (media := os.environ.get("VMS_SAMPLE_MEDIA_DIR")):
        # The same default as the server's: the models that come with the sample media.
        models_dir = Path(media) / "models"
    try:
        mask_plan = load_plan(plan)
        if not input.is_file():
            raise MaskToolError(f"cannot read input {input}: no such file")
        if preview:
            preview_file(input, output, mask_plan)
        elif is_image(input):
            mask_image(input, output, mask_plan, models_dir=models_dir)
        else:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
                disable=not err.is_terminal,
            ) as bar:
                task = bar.add_task(f"masking {input.name}", total=None)

                def step(done: int, total: int | None) -> None:
                    bar.update(task, completed=done, total=total)

                stats = mask_video(
                    input,
                    output,
                    mask_plan,
                    models_dir=models_dir,
                    detect_every=detect_every,
                    progress=step,
                )
            if stats.fail_closed:
                err.print(
                    f"warning: {stats.fail_closed} frame(s) fully anonymised after errors "
                    f"({stats.last_error})",
                    markup=False,
                )
    except PlanError as exc:
        err.print(f"error: bad plan {plan}: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    except (MaskToolError, ModelError, MaskingError) as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from exc

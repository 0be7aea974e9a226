"""``visionserve jobs``: list, show (and follow) and cancel durable jobs.

It reads and writes the same database as the cluster (``VISIONSERVE_DATABASE_URL``),
so it works from any machine that reaches it; cancelling goes through the queue as
the API does (a queued job's webhook is sent, a running one's worker stops it).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer

from visionserve.errors import VisionServeError
from visionserve.settings import get_settings
from visionserve.store.queue import TERMINAL, JobQueue
from visionserve.store.records import Job

STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
BAR_WIDTH = 30

jobs = typer.Typer(help="Durable jobs: list, show (--follow) and cancel.", no_args_is_help=True)


def _queue() -> JobQueue:
    settings = get_settings()
    from visionserve.store.db import engine_for

    engine_for(settings.database_url)  # migrated, as the cluster does at start
    return JobQueue(settings.database_url, settings.jobs)


def _get(job_id: str) -> Job:
    try:
        return _queue().get(job_id)
    except VisionServeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def bar(fraction: float) -> str:
    """``[#########.....................]  30%``"""
    fraction = max(0.0, min(1.0, fraction))
    done = round(fraction * BAR_WIDTH)
    return f"[{'#' * done}{'.' * (BAR_WIDTH - done)}] {fraction * 100:3.0f}%"


def _when(job: Job, field: str) -> str:
    value = getattr(job, field)
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def describe(job: Job) -> list[str]:
    """The lines ``jobs show`` prints for one job."""
    lines = [
        f"job       {job.id}",
        f"surface   {job.surface}",
        f"kind      {job.kind}",
        f"status    {job.status}" + (" (cancel requested)" if job.cancel_requested else ""),
        f"progress  {bar(job.progress)}",
        f"attempts  {job.attempts} of {job.max_attempts}",
        f"created   {_when(job, 'created_at')}",
        f"started   {_when(job, 'started_at')}",
        f"finished  {_when(job, 'finished_at')}",
    ]
    if job.message:
        lines.append(f"message   {job.message}")
    if job.metrics:
        lines.append(f"metrics   {json.dumps(job.metrics, sort_keys=True, default=str)}")
    if job.error:
        code = f" ({job.error_code})" if job.error_code else ""
        lines.append(f"error     {job.error}{code}")
    return lines


@jobs.command("list")
def jobs_list(
    surface: str | None = typer.Option(None, help="Only this surface's jobs (e.g. inspect)."),
    status: str | None = typer.Option(
        None, help=f"Only jobs in this status: {', '.join(STATUSES)}."
    ),
    limit: int = typer.Option(20, min=1, max=1000, help="At most this many, newest first."),
) -> None:
    """List jobs, newest first."""
    from visionserve.store.job_views import list_jobs

    if status is not None and status not in STATUSES:
        typer.echo(f"error: --status must be one of {', '.join(STATUSES)}", err=True)
        raise typer.Exit(2)
    found = list_jobs(_queue().database_url, surface=surface, status=status, limit=limit)
    for job in found:
        progress = f"{job.progress * 100:3.0f}%"
        fields = [job.id, job.surface, job.kind, job.status, progress, _when(job, "created_at")]
        typer.echo("\t".join([*fields, job.message or ""]).rstrip())
    if not found:
        typer.echo("no jobs", err=True)


@jobs.command("show")
def jobs_show(
    job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow until it ends."),
    interval: float = typer.Option(1.0, min=0.05, help="Seconds between polls (--follow)."),
) -> None:
    """Show a job; ``--follow`` draws its progress until it ends (exit 1 unless completed)."""
    job = _get(job_id)
    if follow:
        job = _follow(job, interval)
    for line in describe(job):
        typer.echo(line)
    if follow and job.status != "completed":
        raise typer.Exit(1)


def _follow(job: Job, interval: float) -> Job:
    """Poll ``job`` until it is terminal, drawing a progress line whenever it changes.

    On a terminal the line is redrawn in place; piped, each change is a line of its own.
    """
    queue = _queue()
    live = sys.stdout.isatty()
    shown: tuple[Any, ...] | None = None
    while True:
        state = (job.status, round(job.progress, 3), job.message)
        if state != shown:
            shown = state
            line = f"{bar(job.progress)}  {job.status}  {job.message or ''}".rstrip()
            typer.echo(f"\r{line}\x1b[K" if live else line, nl=not live)
        if job.status in TERMINAL:
            if live:
                typer.echo("")
            return job
        time.sleep(interval)
        job = queue.get(job.id)


@jobs.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job: a queued one at once, a running one is asked to stop."""
    from visionserve.platform.context import build_context
    from visionserve.platform.worker import load_job_modules
    from visionserve.surfaces import NAMES, job_modules
    from visionserve.surfaces.inspect.model_service import ModelService

    # As the ingress: the job kinds' webhook bodies, and the queue with its terminal hook.
    load_job_modules(job_modules(NAMES))
    ctx = build_context(get_settings())
    try:
        job = ctx.queue.get(job_id)
        if job.surface == "documents":
            task_id = job.payload.get("task_id", "{task_id}")
            typer.echo(
                "error: cancel a documents task through its API (its task record changes "
                f"with it): GET /documents/api/v1/task/{task_id}/cancel",
                err=True,
            )
            raise typer.Exit(1)
        if job.surface == "inspect":
            # A queued training's model is marked failed with it, as DELETE /jobs/{id} does.
            ModelService(ctx.settings, ctx.blobs, ctx.queue).cancel_job(ctx.queue, job_id)
        else:
            ctx.queue.cancel(job_id)
    except VisionServeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    job = ctx.queue.get(job_id)
    if job.status == "cancelled":
        typer.echo(f"cancelled {job.id}")
    else:
        typer.echo(f"cancel requested for {job.id} ({job.status}): its worker stops it")

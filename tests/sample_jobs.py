"""A job kind and a small surface used by the platform tests (the real surfaces add theirs)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from visionserve.api.surface import Ctx, CurrentPrincipal, Surface
from visionserve.errors import VisionServeError
from visionserve.platform.context import AppContext
from visionserve.platform.worker import JobContext, job_kind
from visionserve.store.db import session_scope
from visionserve.store.queue import enqueue


@job_kind("sample.sleep")
async def sleep_job(ctx: JobContext) -> dict[str, Any]:
    """Sleeps in steps, reporting progress; appends to a trace file to count runs."""
    trace = Path(ctx.payload["trace"])
    with trace.open("a") as fh:
        fh.write(f"start {os.getpid()} {ctx.attempt}\n")
    steps = int(ctx.payload.get("steps", 10))
    for i in range(steps):
        ctx.progress(i / steps, f"step {i}/{steps}")
        await asyncio.sleep(float(ctx.payload.get("step_s", 0.2)))
    with trace.open("a") as fh:
        fh.write(f"done {os.getpid()} {ctx.attempt}\n")
    return {"pid": os.getpid(), "attempt": ctx.attempt}


class SubmitBody(BaseModel):
    trace: str
    steps: int = Field(10, ge=1, le=1000)
    step_s: float = Field(0.2, ge=0, le=5)
    webhook_url: str | None = None
    webhook_secret: str | None = None


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    return JSONResponse({"error": {"code": err.code, "message": err.message}}, err.status)


def router(ctx: AppContext) -> APIRouter:
    r = APIRouter()

    @r.post("/jobs", status_code=202)
    async def submit(body: SubmitBody, app_ctx: Ctx, who: CurrentPrincipal) -> dict[str, str]:
        if body.webhook_url:
            await asyncio.to_thread(app_ctx.egress.check, body.webhook_url)

        def commit() -> dict[str, str]:  # off the event loop, as the surfaces' services run
            with session_scope(app_ctx.settings.database_url) as s:
                job = enqueue(
                    s,
                    surface="sample",
                    kind="sample.sleep",
                    payload=body.model_dump(exclude={"webhook_url", "webhook_secret"}),
                    settings=app_ctx.settings.jobs,
                    owner_key_id=who.key.id if who.key else None,
                    webhook_url=body.webhook_url,
                    webhook_secret=body.webhook_secret,
                )
                return {"job_id": job.id, "status": job.status}

        return await asyncio.to_thread(commit)

    @r.get("/jobs/{job_id}")
    async def status(job_id: str, app_ctx: Ctx) -> dict[str, Any]:
        job = await asyncio.to_thread(app_ctx.queue.get, job_id)
        return {
            "job_id": job.id,
            "status": job.status,
            "progress": job.progress,
            "result": job.result,
            "attempts": job.attempts,
        }

    @r.post("/echo")
    async def echo(request: Request, payload: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        request.app.state.echo_calls = getattr(request.app.state, "echo_calls", 0) + 1
        return {"echo": payload, "calls": request.app.state.echo_calls}

    @r.post("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    return r


def backpressure_router(ctx: AppContext) -> APIRouter:
    """Raises Serve's own queue-full error, as a model handle would under load."""
    r = APIRouter()

    @r.get("/busy")
    async def busy() -> None:
        from ray.serve.exceptions import BackPressureError

        raise BackPressureError(num_queued_requests=8, max_queued_requests=8)

    return r


SURFACE = Surface(
    name="sample",
    mount="/sample",
    title="sample",
    render_error=render_error,
    routers=(router, backpressure_router),
    requires_key=True,
    rate_limit_per_minute=5,
    idempotency=True,
)

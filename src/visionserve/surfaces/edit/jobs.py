"""edit's durable jobs and the callback bodies its contract lists, field for field.

* ``edit.b64`` / ``edit.cos``: one image through the ``edit`` deployment; the result
  inline (base64) or in the output bucket (``results/<job_id>/<stem>_modified.<ext>``
  and a presigned URL).
* ``edit.batch``: every image under the input prefix through the injected
  :class:`~visionserve.surfaces.edit.batch.BatchRunner` (a Ray Data job in the
  cluster: ``deployments/edit_batch.py``), with progress on the job row.

Callbacks leave through the platform's outbox (at least once, retried with backoff,
a stable ``X-VisionServe-Event-Id``); each body is built through a model that
forbids extra fields, so a payload can never drift from the tool documents.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

from visionserve.errors import BadRequest
from visionserve.models.edit import Plan
from visionserve.platform.worker import JobContext, job_kind
from visionserve.store.records import Job
from visionserve.surfaces.edit import cos
from visionserve.surfaces.edit import schemas as s
from visionserve.surfaces.edit.batch import BatchRunner, BatchSpec, list_inputs, summarise
from visionserve.surfaces.edit.editing import Edited, check_plan, generative_backend
from visionserve.surfaces.edit.service import B64_KIND, BATCH_KIND, COS_KIND, DEFAULT_FILENAME

log = logging.getLogger(__name__)

# The name under which the job worker injects the batch runner into AppContext.runtime.
BATCH_RUNNER = "edit.batch"
# Where the edit deployment's handle is found in AppContext.handles.
EDIT_HANDLE = "edit"


# --- callback bodies ------------------------------------------------------------------


def _failed(job: Job) -> dict[str, Any]:
    return s.ImageFailed(
        job_id=job.id,
        filename=job.payload.get("filename") or DEFAULT_FILENAME,
        error=job.error or f"job {job.status}",
    ).model_dump()


def b64_callback(job: Job) -> dict[str, Any]:
    if job.status != "completed" or not job.result:
        return _failed(job)
    return s.B64Completed(
        job_id=job.id,
        filename=job.payload["filename"],
        result_image_base64=job.result["result_image_base64"],
        result_mime_type=job.result["result_mime_type"],
    ).model_dump()


def cos_callback(job: Job) -> dict[str, Any]:
    if job.status != "completed" or not job.result:
        return _failed(job)
    return s.CosCompleted(
        job_id=job.id,
        filename=job.payload["filename"],
        object_key=job.result["object_key"],
        result_url=job.result["result_url"],
        expires_in=job.result["expires_in"],
    ).model_dump()


def batch_callback(job: Job) -> dict[str, Any]:
    """The batch summary; a failed batch reports what it counted before it failed."""
    output = {
        "output_bucket": job.payload.get("output_bucket", ""),
        "output_prefix": job.payload["output_prefix"],
    }
    if job.status == "completed" and job.result:
        counts = {k: v for k, v in job.result.items() if k in s.BatchCallback.model_fields}
        return s.BatchCallback(job_id=job.id, **{**counts, **output}).payload()
    seen = job.metrics or {}
    started = job.started_at or job.created_at
    ended = job.finished_at or started
    processed = int(seen.get("processed", 0))
    fallback = int(seen.get("fallback_local", 0))
    return s.BatchCallback(
        status="failed",
        job_id=job.id,
        total_files=int(seen.get("total_files", 0)),
        processed=processed,
        failed=int(seen.get("failed", 0)),
        fallback_local=fallback,
        duration_seconds=round((ended - started).total_seconds(), 3),
        total_files_processed=processed + fallback,
        errors=[],
        error=job.error or f"job {job.status}",
        **output,
    ).payload()


# --- handlers ---------------------------------------------------------------------------


async def _edit(ctx: JobContext) -> tuple[Edited, str]:
    payload = ctx.payload
    if payload.get("input_error"):
        raise BadRequest(payload["input_error"], code="invalid_base64")
    blobs = ctx.app.blobs
    try:
        data = await asyncio.to_thread(blobs.get, payload["input_key"])
        ctx.progress(0.1, "editing")
        edited: Edited = await ctx.app.handles[EDIT_HANDLE].edit.remote(data, payload["prompt"])
    except Exception as exc:
        # A job that fails for good takes its input with it. A lost replica (the job is
        # queued again), a lost lease or a shutdown (CancelledError) leave it for the next try.
        if not ctx.will_retry(exc):
            await asyncio.to_thread(blobs.delete, payload["input_key"])
        raise
    await asyncio.to_thread(blobs.delete, payload["input_key"])
    return edited, payload["filename"]


@job_kind(B64_KIND, webhook_payload=b64_callback)
async def b64_job(ctx: JobContext) -> dict[str, Any]:
    edited, _ = await _edit(ctx)
    return {
        "result_image_base64": base64.b64encode(edited.encoded).decode(),
        "result_mime_type": edited.mime_type,
        **_facts(edited),
    }


@job_kind(COS_KIND, webhook_payload=cos_callback)
async def cos_job(ctx: JobContext) -> dict[str, Any]:
    edited, filename = await _edit(ctx)
    settings = ctx.app.settings
    key = f"results/{ctx.job_id}/{cos.result_name(filename, edited.format)}"
    bucket = cos.output_bucket(settings)
    expires = settings.edit.presign_expires
    with cos.storage("put_object"):
        await asyncio.to_thread(bucket.put, key, edited.encoded, edited.mime_type)
    with cos.storage("presign"):
        url = await asyncio.to_thread(bucket.url, key, expires)
    return {"object_key": key, "result_url": url, "expires_in": expires, **_facts(edited)}


def _facts(edited: Edited) -> dict[str, Any]:
    """What GET /edit/jobs shows beside the contract's fields."""
    return {
        "route": edited.route,
        "applied": edited.applied,
        "width": edited.width,
        "height": edited.height,
        "note": edited.note,
    }


@job_kind(BATCH_KIND, webhook_payload=batch_callback)
async def batch_job(ctx: JobContext) -> dict[str, Any]:
    """Plan once, check the plan, list the inputs, run them all, summarise."""
    started = time.time()
    settings = ctx.app.settings
    runner: BatchRunner = ctx.app.runtime_object(BATCH_RUNNER, "COS batches")
    plan = Plan.model_validate(
        await ctx.app.handles[EDIT_HANDLE].plan.remote(ctx.payload["prompt"])
    )
    # An uncovered prompt fails the batch before any image is read.
    check_plan(plan, generative_backend(settings))
    keys, skipped = await asyncio.to_thread(list_inputs, settings)
    if skipped:
        log.info("batch %s: %d non-image objects skipped", ctx.job_id, len(skipped))
    counts: dict[str, Any] = {
        "total_files": len(keys),
        "done": 0,
        "skipped_non_images": len(skipped),
    }
    ctx.progress(0.0, f"{len(keys)} images", dict(counts))
    spec = BatchSpec(
        job_id=ctx.job_id,
        prompt=ctx.payload["prompt"],
        plan=plan,
        keys=keys,
        output_prefix=ctx.payload["output_prefix"],
        settings=settings.model_dump(mode="json"),
    )

    def progress(done: int, total: int) -> None:
        counts["done"] = done
        ctx.progress(done / total if total else 1.0, f"{done}/{total} images", dict(counts))

    outcomes = await runner.run(spec, progress) if keys else []
    summary = summarise(outcomes, len(keys), started)
    ctx.progress(1.0, "done", {**counts, **summary})
    return {**summary, "skipped_non_images": skipped[: s.MAX_ERRORS]}

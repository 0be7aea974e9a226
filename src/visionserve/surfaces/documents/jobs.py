"""documents' durable jobs: parsing a task through the documents graph, expiry sweeps."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from visionserve.errors import public_failure
from visionserve.models.documents.config import Configuration, validated
from visionserve.platform.context import AppContext
from visionserve.platform.worker import JobContext, job_kind, periodic
from visionserve.surfaces.documents.service import JOB_KIND, DocumentService

log = logging.getLogger(__name__)


@job_kind(JOB_KIND)
async def parse_job(ctx: JobContext) -> dict[str, Any]:
    """Run the document graph for a task and store its output."""
    service = DocumentService(ctx.app.settings, ctx.app.blobs, queue=ctx.app.queue)
    task_id = ctx.payload["task_id"]
    task = await asyncio.to_thread(service.begin, task_id, ctx.job_id)
    if task is None:
        return {"skipped": True}
    graph = ctx.app.handles["documents-graph"]
    try:
        # Stored validated at creation; validated again here, where the worker loads it.
        config = validated(Configuration, task.configuration)
        result = await graph.parse.remote(task.id, task.input_key, config)
    except Exception as exc:
        # The task's message is what its client reads: the public face of the failure
        # (logged here, once, under the job id); the job stores the same.
        if ctx.will_retry(exc):
            raise  # a replica or node was lost: the task stays Processing for the next attempt
        failure = public_failure(exc, ref=f"job {ctx.job_id}", logger=log)
        await asyncio.to_thread(
            service.finish, task_id, ctx.job_id, "Failed", failure.message, None
        )
        raise failure.error() from exc
    output_key = f"documents/tasks/{task_id}/output-{ctx.job_id[:8]}.json"
    body = json.dumps({"chunks": result["chunks"]}).encode()
    await asyncio.to_thread(service.blobs.put, output_key, body, "application/json")
    failed = result.get("page_errors") or []
    message = (
        "Task succeeded"
        if not failed
        else (
            f"Task succeeded with {len(failed)} failed page(s): "
            + "; ".join(f"page {e['page']}: {e['error']}" for e in failed)
        )
    )
    if result.get("llm") == "not_configured":
        message += "; llm_processing was not applied: no LLM endpoint is configured"
    await asyncio.to_thread(service.finish, task_id, ctx.job_id, "Succeeded", message, output_key)
    return {"task_id": task_id, "chunks": len(result["chunks"]), "failed_pages": len(failed)}


@periodic("documents.expiry", interval_s=30)
async def sweep(app: AppContext) -> None:
    service = DocumentService(app.settings, app.blobs)
    removed = await asyncio.to_thread(service.sweep_expired)
    if removed:
        log.info("swept %d expired document tasks", removed)

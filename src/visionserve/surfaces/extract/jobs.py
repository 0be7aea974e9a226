"""extract's durable job: run the extract graph on an ingested image, store the outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from visionserve.errors import public_failure
from visionserve.platform.worker import JobContext, job_kind
from visionserve.surfaces.extract.service import JOB_KIND, ExtractService

log = logging.getLogger(__name__)
GRAPH = "extract-graph"


@job_kind(JOB_KIND)
async def extract_job(ctx: JobContext) -> dict[str, Any]:
    """Extract with the job's pattern snapshot; the job row and its webhooks change together."""
    service = ExtractService(ctx.app.settings)
    job_id = ctx.payload["job_id"]
    job = await asyncio.to_thread(service.begin, job_id)
    if job is None:
        return {"skipped": True}
    ctx.progress(0.1, "extracting")
    started = time.perf_counter()
    try:
        outcome = await ctx.app.handles[GRAPH].extract.remote(job.input_key, job.spec)
    except Exception as exc:
        if ctx.will_retry(exc):
            raise  # a replica or node was lost: the job stays processing for the next attempt
        elapsed = round((time.perf_counter() - started) * 1000)
        # The client sees the public face only (logged here under the job id); what the
        # input itself caused keeps its code, anything else is extraction_failed.
        failure = public_failure(exc, ref=f"job {job_id}", logger=log)
        code = failure.code if failure.category == "invalid_input" else "extraction_failed"
        await asyncio.to_thread(service.fail, job_id, code, failure.message, elapsed)
        raise failure.error(code=code) from exc
    elapsed = round((time.perf_counter() - started) * 1000)
    await asyncio.to_thread(service.complete, job_id, outcome, elapsed)
    return {
        "confidence": outcome["confidence"],
        "pages": outcome.get("pages"),
        "engine": outcome.get("engine"),
    }

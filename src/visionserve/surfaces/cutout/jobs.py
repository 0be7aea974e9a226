"""cutout's durable jobs: async runs (``webhook_url`` given) and their callback body."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

from visionserve.platform.images import load_image
from visionserve.platform.inputs import to_pixels
from visionserve.platform.worker import JobContext, job_kind
from visionserve.store.records import Job
from visionserve.surfaces.cutout.service import CATALOGUE, REQUESTS, CutoutService


def webhook_payload(job: Job) -> dict[str, Any]:
    """The contract's callback body, signed in-body too (``signature``) when a secret is set."""
    payload: dict[str, Any] = {
        "event": "job_completed" if job.status == "completed" else f"job_{job.status}",
        "job_id": job.id,
        "status": (job.result or {}).get("status", job.status),
        "results": (job.result or {}).get("results", []),
    }
    if job.error:
        payload["error"] = job.error
    if job.webhook_secret:
        canonical = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        payload["signature"] = hmac.new(
            job.webhook_secret.encode(), canonical, hashlib.sha256
        ).hexdigest()
    return payload


async def _run_job(ctx: JobContext, kind: str) -> dict[str, Any]:
    settings = ctx.app.settings
    service = CutoutService(
        settings,
        ctx.app.blobs,
        dict(ctx.app.handles),
        enabled=ctx.app.runtime.get(CATALOGUE),
        queue=ctx.app.queue,
    )
    payload = dict(ctx.payload)
    data = await asyncio.to_thread(service.blobs.get, payload["input_key"])
    img = await asyncio.to_thread(load_image, data, settings)
    pixels = to_pixels(img)
    ctx.progress(0.1, "running models")
    owner = payload.pop("owner")
    payload["return_base64"] = False  # async results are delivered as signed URLs
    request = REQUESTS[kind].model_validate(payload)
    result = await service.run(kind, ctx.job_id, pixels, request, owner)
    await asyncio.to_thread(service.blobs.delete, payload["input_key"])
    return result.model_dump(mode="json")


@job_kind("cutout.shotgun", webhook_payload=webhook_payload)
async def shotgun_job(ctx: JobContext) -> dict[str, Any]:
    return await _run_job(ctx, "shotgun")


@job_kind("cutout.process", webhook_payload=webhook_payload)
async def process_job(ctx: JobContext) -> dict[str, Any]:
    return await _run_job(ctx, "process")


@job_kind("cutout.upscale", webhook_payload=webhook_payload)
async def upscale_job(ctx: JobContext) -> dict[str, Any]:
    return await _run_job(ctx, "upscale")

"""cutout: background-removal shotgun and upscaling (contract: bg-removal-shotgun-api.md)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from visionserve import __version__
from visionserve.api.surface import Ctx, CurrentPrincipal
from visionserve.errors import VisionServeError
from visionserve.platform.context import AppContext
from visionserve.platform.images import load_image
from visionserve.platform.inputs import read_input_bytes, to_pixels
from visionserve.surfaces.cutout import schemas as s
from visionserve.surfaces.cutout.service import CATALOGUE, CutoutService

# The contract lists these error types; anything more specific keeps its code in details.
_CONTRACT_TYPES = {
    "validation_error",
    "missing_image",
    "invalid_format",
    "image_too_large",
    "processing_error",
    "internal_error",
    "service_unavailable",
    "not_found",
    "rate_limit_exceeded",
    "unauthorized",
}
_RENAMED = {"payload_too_large": "image_too_large", "rate_limited": "rate_limit_exceeded"}
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": s.AcceptedResponse, "description": "Queued (webhook_url given)"}
}


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"error": {"type", "message", "details"}}`` as the contract shows."""
    code = _RENAMED.get(err.code, err.code)
    details = dict(err.details)
    if code not in _CONTRACT_TYPES:
        details.setdefault("code", code)
        code = "validation_error" if err.status < 500 else "internal_error"
    body = {"error": {"type": code, "message": err.message, "details": details or None}}
    return JSONResponse(body, status_code=err.status)


def service(ctx: AppContext) -> CutoutService:
    return CutoutService(
        ctx.settings,
        ctx.blobs,
        dict(ctx.handles),
        ctx.concurrency,
        enabled=ctx.runtime.get(CATALOGUE),
        queue=ctx.queue,
    )


def owner_of(request: Request, who: Any) -> str:
    if who.key is not None:
        return str(who.key.id)
    return f"ip:{request.client.host if request.client else 'unknown'}"


async def _pixels_or_job(
    kind: str, req: s.ImageInput, ctx: AppContext, owner: str
) -> tuple[str, Any]:
    """Validate the image; queue a job when a webhook is given (returns the 202 body)."""
    job_id = str(uuid.uuid4())
    if req.webhook_url:
        await asyncio.to_thread(ctx.egress.check, req.webhook_url)
    data = await read_input_bytes(
        req.image, req.image_url, egress=ctx.egress, settings=ctx.settings
    )
    img = await asyncio.to_thread(load_image, data, ctx.settings)
    # An output over the limit is refused now, before any model runs or any job is queued.
    service(ctx).check_output(req, img.width, img.height)
    if req.webhook_url:  # validated now, so a bad image is a 400 and not a failed job
        accepted = await asyncio.to_thread(service(ctx).submit, kind, job_id, data, req, owner)
        return job_id, JSONResponse(accepted.model_dump(), status_code=202)
    return job_id, to_pixels(img)


def router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["cutout"])

    async def run(kind: str, req: s.ImageInput, request: Request, app: AppContext, who: Any) -> Any:
        owner = owner_of(request, who)
        job_id, pixels = await _pixels_or_job(kind, req, app, owner)
        if isinstance(pixels, JSONResponse):  # queued: the 202 body
            return pixels
        return await service(app).run(kind, job_id, pixels, req, owner)

    @r.post("/remove-background", response_model=s.RemoveBackgroundResponse, responses=_ACCEPTED)
    async def remove_background(
        req: s.RemoveBackgroundRequest, request: Request, app: Ctx, who: CurrentPrincipal
    ) -> Any:
        """Run the selected models in parallel (shotgun) and return every result."""
        return await run("shotgun", req, request, app, who)

    @r.post("/upscale", response_model=s.UpscaleResponse, responses=_ACCEPTED)
    async def upscale(
        req: s.UpscaleRequest, request: Request, app: Ctx, who: CurrentPrincipal
    ) -> Any:
        """Upscale 2× or 4× (Lanczos in premultiplied alpha, or waifu2x)."""
        return await run("upscale", req, request, app, who)

    @r.post("/process", response_model=s.ProcessResponse, responses=_ACCEPTED)
    async def process(
        req: s.ProcessRequest, request: Request, app: Ctx, who: CurrentPrincipal
    ) -> Any:
        """Background removal, then each result upscaled (bg-removal → upscale)."""
        return await run("process", req, request, app, who)

    @r.post("/log-selection", response_model=s.LogSelectionResponse)
    async def log_selection(req: s.LogSelectionRequest, app: Ctx) -> s.LogSelectionResponse:
        """Record which model's result the user picked (validated against the job)."""
        return await asyncio.to_thread(service(app).log_selection, req)

    @r.get("/preferences", response_model=s.PreferencesResponse)
    async def preferences(app: Ctx) -> s.PreferencesResponse:
        """Win rates per model, overall and per image_category."""
        return await asyncio.to_thread(service(app).preferences)

    @r.get("/jobs/{job_id}", response_model=s.JobStatusResponse)
    async def job(job_id: str, app: Ctx) -> s.JobStatusResponse:
        """Status and results of an async request."""
        return await asyncio.to_thread(service(app).job, job_id)

    @r.get("/models")
    async def models(app: Ctx) -> dict[str, Any]:
        """The enabled background-removal models."""
        names = service(app).catalogue().models
        return {"models": [{"model_id": k, "model_name": v} for k, v in names.items()]}

    return r


def health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, object]:
        statuses = await ctx.cluster_status()
        services: dict[str, str] = {}
        for name, state in statuses.items():
            if name.startswith("bg-"):
                services[f"local_{name[3:]}"] = "loaded" if state == "HEALTHY" else state.lower()
            elif name.startswith("remote-"):
                services[name[7:]] = "connected" if state == "HEALTHY" else state.lower()
            elif name == "upscale":
                services["upscale"] = "loaded" if state == "HEALTHY" else state.lower()
        healthy = all(v in ("loaded", "connected") for v in services.values())
        return {
            "status": "healthy" if healthy else "degraded",
            "version": __version__,
            "services": services,
        }

    return router

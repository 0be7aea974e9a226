"""edit's routes (contract: async-image-processing-api.md) and its error body."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from visionserve.api.surface import Ctx
from visionserve.errors import EgressRefused, Unprocessable, VisionServeError
from visionserve.platform.context import AppContext
from visionserve.surfaces.edit import schemas as s
from visionserve.surfaces.edit import tool_documents
from visionserve.surfaces.edit.service import EditService

# The spec's header name; HTTP lowers it on the way and Starlette reads any case.
CallbackUrl = Annotated[
    str | None,
    Header(alias="callbackUrl", description="Where the result is POSTed (the callback)"),
]
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": s.Accepted, "description": "Job accepted; the result arrives at callbackUrl"}
}


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"detail": "..."}``, as the contract's FastAPI service answers."""
    return JSONResponse({"detail": err.message}, status_code=err.status, headers=err.headers)


def service(ctx: AppContext) -> EditService:
    return EditService(ctx.settings, ctx.blobs, ctx.queue)


async def _callback(ctx: AppContext, url: str | None) -> str:
    """The callback URL, checked against the egress policy now rather than at delivery."""
    if not url or not url.strip():
        raise Unprocessable("Missing header: callbackUrl", code="missing_callback")
    try:
        await asyncio.to_thread(ctx.egress.check, url.strip())
    except EgressRefused as exc:
        raise Unprocessable(f"callbackUrl refused: {exc.message}", code="url_not_allowed") from None
    return url.strip()


def router(ctx: AppContext) -> APIRouter:
    r = APIRouter(tags=["edit"])

    async def accept_image(
        delivery: Literal["b64", "cos"], req: s.ImageRequest, app: AppContext, url: str | None
    ) -> JSONResponse:
        callback = await _callback(app, url)
        accepted = await asyncio.to_thread(service(app).submit_image, delivery, req, callback)
        return JSONResponse(accepted.model_dump(), status_code=202)

    @r.post("/process-image-async-b64", status_code=202, responses=_ACCEPTED)
    async def process_image_async_b64(
        req: s.ImageRequest, app: Ctx, callback_url: CallbackUrl = None
    ) -> JSONResponse:
        """Edit one image as the prompt says; the callback carries it as base64."""
        return await accept_image("b64", req, app, callback_url)

    @r.post("/process-image-async", status_code=202, responses=_ACCEPTED)
    async def process_image_async(
        req: s.ImageRequest, app: Ctx, callback_url: CallbackUrl = None
    ) -> JSONResponse:
        """Edit one image; the result goes to the output bucket, the callback has its URL."""
        return await accept_image("cos", req, app, callback_url)

    @r.post("/batch-process-images", status_code=202, responses=_ACCEPTED)
    async def batch_process_images(
        req: s.BatchRequest, app: Ctx, callback_url: CallbackUrl = None
    ) -> JSONResponse:
        """Edit every image under the input bucket/prefix; one summary callback."""
        callback = await _callback(app, callback_url)
        accepted = await asyncio.to_thread(service(app).submit_batch, req, callback)
        return JSONResponse(accepted.model_dump(), status_code=202)

    @r.get("/jobs/{job_id}", response_model=s.JobView)
    async def job(job_id: str, app: Ctx) -> s.JobView:
        """A job's state, progress, result and the delivery log of its callback."""
        return await asyncio.to_thread(service(app).job, job_id)

    @r.get("/openapi/watsonx/{name}")
    async def watsonx_tool(name: str, app: Ctx) -> dict[str, Any]:
        """The OpenAPI 3.0 tool document of one operation, for watsonx Orchestrate."""
        base = f"{app.settings.public_url.rstrip('/')}/edit"
        return await asyncio.to_thread(tool_documents.load, name.removesuffix(".json"), base)

    return r


def health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/cos/config", response_model=s.CosConfig)
    async def cos_config(app: Ctx) -> s.CosConfig:
        """Where inputs are read and results written (never a credential)."""
        return service(app).cos_config()

    return router

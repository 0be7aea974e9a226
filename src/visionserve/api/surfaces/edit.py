"""edit: prompt-driven async image edits (contract: async-image-processing-api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from visionserve.api.context import AppContext
from visionserve.api.surface import Surface
from visionserve.errors import VisionServeError


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"detail": "..."}``, as the contract's FastAPI service answers."""
    return JSONResponse({"detail": err.message}, status_code=err.status)


def health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return router


SURFACE = Surface(
    name="edit",
    mount="/edit",
    title="edit",
    description="Prompt-driven image edits, async with callbacks, results inline or in COS.",
    render_error=render_error,
    public_routers=(health_router,),
    requires_key=False,
    validation_status=422,
)

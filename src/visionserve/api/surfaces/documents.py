"""documents: OCR → layout → chunking with the task API (contract: chunkr-api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from visionserve import __version__
from visionserve.api.context import AppContext
from visionserve.api.surface import Surface
from visionserve.errors import VisionServeError

# The contract's own messages for the platform's generic errors.
_MESSAGES = {"rate_limit_exceeded": "Usage limit exceeded"}


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """The contract's error body is a bare JSON string."""
    return JSONResponse(_MESSAGES.get(err.code, err.message), status_code=err.status)


def health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> str:
        return f"OK - Version {__version__}"

    return router


SURFACE = Surface(
    name="documents",
    mount="/documents",
    title="documents",
    description="Document parsing: OCR, layout segments and chunks, as async tasks.",
    render_error=render_error,
    public_routers=(health_router,),
    requires_key=True,
    validation_status=422,
)

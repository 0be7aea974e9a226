"""edit's routes and its contract's error body."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from visionserve.errors import VisionServeError
from visionserve.platform.context import AppContext


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"detail": "..."}``, as the contract's FastAPI service answers."""
    return JSONResponse({"detail": err.message}, status_code=err.status)


def health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return router

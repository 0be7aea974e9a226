"""cutout: background-removal shotgun and upscaling (contract: bg-removal-shotgun-api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from visionserve import __version__
from visionserve.api.context import AppContext
from visionserve.api.surface import Surface
from visionserve.errors import VisionServeError

# The contract's names for the platform's generic codes.
_CODES = {"payload_too_large": "image_too_large", "not_found": "not_found"}


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"error": {"type", "message", "details"}}`` as the contract shows."""
    body = {
        "error": {
            "type": _CODES.get(err.code, err.code),
            "message": err.message,
            "details": err.details or None,
        }
    }
    return JSONResponse(body, status_code=err.status)


def health_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, object]:
        statuses = await ctx.cluster_status()
        services = {
            name: ("loaded" if state == "HEALTHY" else state.lower())
            for name, state in statuses.items()
            if name.startswith("bg-") or name.startswith("upscale")
        }
        return {"status": "healthy", "version": __version__, "services": services}

    return router


SURFACE = Surface(
    name="cutout",
    mount="/cutout",
    title="cutout",
    description="Background-removal shotgun, upscaling and the bg-removal→upscale pipeline.",
    render_error=render_error,
    public_routers=(health_router,),
    requires_key=False,
    rate_limit_per_minute=60,
    validation_status=400,
)

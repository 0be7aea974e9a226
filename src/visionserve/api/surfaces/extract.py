"""extract: schema-guided extraction from images (contract: imggo-api.md, under /extract/api)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from visionserve.api.surface import Surface
from visionserve.errors import VisionServeError


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"success": false, "error": {"code", "message"}}`` as the contract shows."""
    error: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.details:
        error["details"] = err.details
    return JSONResponse({"success": False, "error": error}, status_code=err.status)


SURFACE = Surface(
    name="extract",
    mount="/extract/api",
    title="extract",
    description="Patterns (instructions + schema) turn images into structured JSON.",
    render_error=render_error,
    requires_key=True,
    rate_limit_per_minute=1000,
    idempotency=True,
    validation_status=400,
)

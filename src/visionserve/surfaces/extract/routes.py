"""extract's routes and its contract's error body."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from visionserve.errors import VisionServeError


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"success": false, "error": {"code", "message"}}`` as the contract shows."""
    error: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.details:
        error["details"] = err.details
    return JSONResponse({"success": False, "error": error}, status_code=err.status)

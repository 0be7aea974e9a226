"""inspect: anomaly detection projects, training and pipelines (contract: geti-inspect-api.md)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from visionserve.api.surface import Surface
from visionserve.errors import VisionServeError


def render_error(err: VisionServeError, request_id: str) -> JSONResponse:
    """``{"detail": "..."}``; validation errors keep FastAPI's list, as the contract's app does."""
    errors = err.details.get("errors") if err.status == 422 else None
    return JSONResponse({"detail": errors or err.message}, status_code=err.status)


SURFACE = Surface(
    name="inspect",
    mount="/inspect/api",
    title="inspect",
    description="Anomaly detection: projects, media, training, models, export, live pipelines.",
    render_error=render_error,
    requires_key=False,
    validation_status=422,
)

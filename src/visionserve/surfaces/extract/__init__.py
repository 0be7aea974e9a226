"""extract: schema-guided extraction from images (contract: imggo-api.md, under /extract/api)."""

from __future__ import annotations

from visionserve.api.surface import Surface
from visionserve.surfaces.extract.routes import render_error, router

SURFACE = Surface(
    name="extract",
    mount="/extract/api",
    title="extract",
    description="Patterns (instructions + schema) turn images into structured JSON.",
    render_error=render_error,
    routers=(router,),
    requires_key=True,
    rate_limit_per_minute=1000,
    idempotency=True,
    validation_status=400,
    # {"success": false, "error": {"code", "message"}} (``details`` where there are some).
    error_schema={
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"type": "boolean", "const": False},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            },
        },
    },
)

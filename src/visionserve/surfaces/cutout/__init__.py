"""cutout: background-removal shotgun and upscaling (contract: bg-removal-shotgun-api.md)."""

from __future__ import annotations

from visionserve.api.surface import Surface
from visionserve.surfaces.cutout.routes import (
    health_router,
    render_error,
    router,
)

SURFACE = Surface(
    name="cutout",
    mount="/cutout",
    title="cutout",
    description="Background-removal shotgun, upscaling and the bg-removal→upscale pipeline.",
    render_error=render_error,
    error_schema={
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": ["object", "null"]},
                },
            }
        },
    },
    routers=(router,),
    public_routers=(health_router,),
    requires_key=False,
    rate_limit_per_minute=60,
    validation_status=400,
)

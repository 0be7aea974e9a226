"""edit: prompt-driven async image edits (contract: async-image-processing-api.md)."""

from __future__ import annotations

from visionserve.api.surface import Surface
from visionserve.surfaces.edit.routes import health_router, render_error, router

SURFACE = Surface(
    name="edit",
    mount="/edit",
    title="edit",
    description="Prompt-driven image edits, async with callbacks, results inline or in COS.",
    render_error=render_error,
    routers=(router,),
    public_routers=(health_router,),
    requires_key=False,
    validation_status=422,
)

"""inspect: anomaly detection projects, training and pipelines (contract: geti-inspect-api.md)."""

from __future__ import annotations

from visionserve.api.surface import Surface
from visionserve.surfaces.inspect.routes import (
    devices_router,
    io_router,
    media_router,
    pipelines_router,
    projects_router,
    render_error,
    snapshots_router,
    training_router,
)

SURFACE = Surface(
    name="inspect",
    mount="/inspect/api",
    title="inspect",
    description="Anomaly detection: projects, media, training, models, export, live pipelines.",
    render_error=render_error,
    # {"detail": "..."}; invalid bodies keep FastAPI's list, as the contract's app does.
    error_schema={
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["loc", "msg", "type"],
                            "properties": {
                                "loc": {"type": "array"},
                                "msg": {"type": "string"},
                                "type": {"type": "string"},
                            },
                        },
                    },
                ]
            }
        },
    },
    routers=(
        projects_router,
        media_router,
        snapshots_router,
        io_router,
        training_router,
        pipelines_router,
        devices_router,
    ),
    requires_key=False,
    # Its UIs poll job progress and live pipeline metrics a few times a second.
    rate_limit_per_minute=1200,
    validation_status=422,
)

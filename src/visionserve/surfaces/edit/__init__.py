"""edit: prompt-driven async image edits (contract: async-image-processing-api.md).

``SURFACE`` is built on first access: the Ray Data actors of a batch import
``visionserve.surfaces.edit.batch`` and need none of the web stack (FastAPI alone
costs them a second or more of start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionserve.api.surface import Surface

    SURFACE: Surface


def _surface() -> Surface:
    from visionserve.api.surface import Surface
    from visionserve.surfaces.edit.routes import health_router, render_error, router

    return Surface(
        name="edit",
        mount="/edit",
        title="edit",
        description="Prompt-driven image edits, async with callbacks, results inline or in COS.",
        render_error=render_error,
        routers=(router,),
        public_routers=(health_router,),
        requires_key=False,
        validation_status=422,
        # The contract's FastAPI service answers {"detail": "..."} for every error.
        error_schema={
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string"}},
        },
    )


def __getattr__(name: str) -> Any:
    if name == "SURFACE":
        surface = _surface()
        globals()["SURFACE"] = surface  # built once
        return surface
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""documents: OCR → layout → chunking with the task API (contract: chunkr-api.md)."""

from __future__ import annotations

from visionserve.api.surface import Surface
from visionserve.surfaces.documents.routes import (
    public_router,
    render_error,
    router,
)

SURFACE = Surface(
    name="documents",
    mount="/documents",
    title="documents",
    description="Document parsing: OCR, layout segments and chunks, as async tasks.",
    render_error=render_error,
    error_schema={"type": "string", "description": "The contract's errors are bare strings"},
    routers=(router,),
    public_routers=(public_router,),
    requires_key=True,
    # Clients poll GET /task/{id}; the contract's own limit is pages per month.
    rate_limit_per_minute=1200,
    validation_status=422,
)

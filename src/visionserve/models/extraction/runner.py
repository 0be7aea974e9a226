"""Which engine runs a job, and the checks every engine's answer goes through.

A job's ``spec`` is its pattern as it was at ingest (schema, instructions, engine);
the schema is parsed again here, where the engine loads it. ``auto`` is the VLM when
one is configured, else the local engine. Whatever the engine, the result must fit
the schema, and a document without any text is refused (it is not a document, or
it is blank), never answered with an invented result.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from visionserve.errors import BadRequest, InvalidImage
from visionserve.models.extraction.document import DocPage, straighten
from visionserve.models.extraction.schema import ExtractionSchema


def straighten_scans(pages: list[DocPage]) -> list[DocPage]:
    """Pages without words (scans) levelled for OCR, as ``document.ocr_pages`` does.

    For OCR elsewhere (the shared OCR deployment): the straightened image replaces the
    page's, so the word boxes OCR gives refer to it.
    """
    return [
        replace(page, image=straighten(page.image))
        if not page.words and page.image is not None
        else page
        for page in pages
    ]


def choose_engine(asked: str, vlm_configured: bool) -> str:
    """``local`` or ``vlm`` for what the pattern asked (``local``, ``vlm`` or ``auto``)."""
    if asked == "vlm" and not vlm_configured:
        raise BadRequest("engine 'vlm' is not configured on this server", code="invalid_request")
    if asked == "auto":
        return "vlm" if vlm_configured else "local"
    return asked


async def run_extraction(
    pages: list[Any], spec: dict[str, Any], local: Any, vlm: Any | None
) -> dict[str, Any]:
    """Extract ``spec``'s schema from OCR'd ``pages`` with the engine it asks for.

    Args:
        pages: ``DocPage`` s whose words are filled (text layer or OCR).
        spec: ``{"schema", "instructions", "engine"}`` of the job.
        local: The ``LocalExtractor``.
        vlm: The ``VlmExtractor``, or None when no VLM is configured.

    Returns:
        ``result``, ``field_metadata``, ``confidence``, ``pages`` and ``engine``.

    Raises:
        InvalidSchema: The stored schema no longer parses.
        InvalidImage: No page has any text (code ``no_text``).
        ExtractionFailed: The engine's result does not fit the schema.
    """
    schema = ExtractionSchema.parse(spec["schema"])
    engine = choose_engine(spec.get("engine") or "auto", vlm is not None)
    if not any(page.words for page in pages):
        raise InvalidImage(
            "No text was found on the document: it is blank or not a document",
            code="no_text",
        )
    instructions = spec.get("instructions") or ""
    if engine == "vlm" and vlm is not None:
        extraction = await vlm.extract(pages, schema, instructions)
    else:
        extraction = await asyncio.to_thread(local.extract, pages, schema, instructions)
    schema.validate_result(extraction.result)
    return {
        "result": extraction.result,
        "field_metadata": extraction.field_metadata,
        "confidence": round(float(extraction.confidence), 4),
        "pages": len(pages),
        "engine": engine,
    }

"""extract composition: load pages → OCR the pages without a text layer (the shared OCR
deployment, pages in parallel) → the extraction engine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from ray import serve

from deployments.common import HEALTH, IO_CPUS, autoscaling
from visionserve.models.documents.types import Page


@serve.deployment(
    name="extract-graph",
    ray_actor_options={"num_cpus": IO_CPUS},
    autoscaling_config=autoscaling(4),
    max_ongoing_requests=16,
    max_queued_requests=64,
    **HEALTH,
    graceful_shutdown_timeout_s=60,
)
class ExtractGraph:
    def __init__(self, extraction: Any, ocr: Any) -> None:
        self.extraction, self.ocr = extraction, ocr

    async def extract(self, input_key: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The job's result, field metadata, confidence, page count and engine used."""
        pages = await self.extraction.pages.remote(input_key)
        scans = [p for p in pages if not p.words and p.image is not None]
        read = await asyncio.gather(
            *(
                self.ocr.recognize.remote(Page(p.number, p.image, p.dpi), "All", "block")
                for p in scans
            )
        )
        words = {page.number: page.words for page in read}
        pages = [replace(p, words=words[p.number]) if p.number in words else p for p in pages]
        return await self.extraction.extract.remote(pages, spec)

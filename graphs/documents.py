"""documents composition: pages flow render → (OCR ‖ layout) → segments, pages in parallel.

Each page's responses are handed from stage to stage; only the segments of every page
come back here, to be chunked together in reading order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from deployments.common import HEALTH, autoscaling
from visionserve.errors import BadRequest, Unprocessable, remote_message
from visionserve.models.documents.config import Configuration, validated
from visionserve.models.documents.pipeline import to_output
from visionserve.models.documents.types import Segment

log = logging.getLogger(__name__)


@serve.deployment(
    name="documents-graph",
    ray_actor_options={"num_cpus": 0.05},
    autoscaling_config=autoscaling(4),
    max_ongoing_requests=16,
    max_queued_requests=64,
    **HEALTH,
    graceful_shutdown_timeout_s=60,
)
class DocumentsGraph:
    def __init__(self, pages: Any, ocr: Any, layout: Any, chunking: Any) -> None:
        self.pages, self.ocr, self.layout, self.chunking = pages, ocr, layout, chunking

    async def parse(
        self, task_id: str, input_key: str, config: Configuration | dict[str, Any]
    ) -> dict[str, Any]:
        """The task's chunks, page count and the pages that failed (under Continue).

        ``config`` may arrive as its JSON dict: it is validated once, here, and every
        stage gets the typed object.
        """
        config = validated(Configuration, config)
        count, style = await self.pages.prepare.remote(input_key, config)
        layout_on = config.segmentation_strategy == "LayoutAnalysis"
        calls = []
        for number in range(1, count + 1):
            page = self.pages.render.remote(input_key, number, config)
            words = self.ocr.recognize.remote(page, config.ocr_strategy)
            regions = self.layout.detect.remote(page) if layout_on else None
            calls.append(self.pages.segments.remote(words, regions, config, task_id, style))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        segments: list[Segment] = []
        errors = []
        for number, outcome in enumerate(outcomes, start=1):
            if isinstance(outcome, BaseException):
                if config.error_handling != "Continue":
                    raise Unprocessable(f"page {number}: {remote_message(outcome)}")
                errors.append({"page": number, "error": remote_message(outcome)})
            else:
                segments.extend(outcome)
        if not segments and errors:
            raise BadRequest("No page of the document could be processed")
        chunked = await self.chunking.chunk.remote(segments, config)
        return {
            "chunks": to_output(chunked["chunks"]),
            "page_count": count,
            "page_errors": errors,
            "llm": chunked["llm"],
        }

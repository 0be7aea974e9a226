"""documents composition: pages flow render → (OCR ‖ layout) → segments, pages in parallel.

Each page's responses are handed from stage to stage; only the segments of every page
come back here, to be chunked together in reading order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from deployments.common import HEALTH, IO_CPUS, autoscaling
from visionserve.errors import BadRequest, Unprocessable, remote_message, replica_gone
from visionserve.models.documents.config import Configuration, validated
from visionserve.models.documents.pipeline import to_output
from visionserve.models.documents.types import Segment

log = logging.getLogger(__name__)
# A page whose replica (or node) died, or whose calls went unanswered, is sent again this
# many times: Serve routes the retry to a live replica once it has noticed the loss.
PAGE_TRIES = 4
# Pages in flight at once, per replica of this graph: the rest wait here, not in the
# stages' bounded Serve queues (max_queued_requests), so a page's deadline counts little
# more than its own work, however many documents are open.
PAGES_IN_FLIGHT = 32


@serve.deployment(
    name="documents-graph",
    ray_actor_options={"num_cpus": IO_CPUS},
    autoscaling_config=autoscaling(4),
    max_ongoing_requests=16,
    max_queued_requests=64,
    **HEALTH,
    graceful_shutdown_timeout_s=60,
)
class DocumentsGraph:
    def __init__(
        self, pages: Any, ocr: Any, layout: Any, chunking: Any, page_timeout_s: float
    ) -> None:
        self.pages, self.ocr, self.layout, self.chunking = pages, ocr, layout, chunking
        self.page_timeout_s = page_timeout_s
        self.slots = asyncio.Semaphore(PAGES_IN_FLIGHT)

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
        calls = [
            self._page(input_key, number, config, task_id, style, layout_on)
            for number in range(1, count + 1)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        segments: list[Segment] = []
        errors = []
        for number, outcome in enumerate(outcomes, start=1):
            if isinstance(outcome, BaseException):
                if replica_gone(outcome):
                    raise outcome  # the cluster failed, not the page: the job is retried
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

    async def _page(
        self,
        input_key: str,
        number: int,
        config: Configuration,
        task_id: str,
        style: Any,
        layout_on: bool,
    ) -> list[Segment]:
        """One page through render → (OCR ‖ layout) → segments; again where a replica
        died or the page got no answer within ``page_timeout_s``."""
        attempt = 0
        async with self.slots:
            while True:
                attempt += 1
                page = self.pages.render.remote(input_key, number, config)
                words = self.ocr.recognize.remote(page, config.ocr_strategy)
                regions = self.layout.detect.remote(page) if layout_on else None
                segments = self.pages.segments.remote(words, regions, config, task_id, style)
                try:
                    done: list[Segment] = await asyncio.wait_for(segments, self.page_timeout_s)
                    return done
                except TimeoutError:
                    # Serve may never answer: when a node dies with a page's rendering, the
                    # calls that take it as their argument are re-sent to live replicas
                    # without end. Drop the calls; the page is rendered again.
                    for call in (page, words, regions, segments):
                        if call is not None:
                            call.cancel()
                    failure: Exception = TimeoutError(
                        f"page {number} got no answer in {self.page_timeout_s:g} s"
                    )
                except Exception as exc:
                    if not replica_gone(exc):
                        raise
                    failure = exc
                if attempt == PAGE_TRIES:
                    raise failure
                log.warning("task %s page %d: %r; trying again", task_id, number, failure)
                await asyncio.sleep(attempt)

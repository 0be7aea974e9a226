"""The whole document graph in one process: what Ray Data batch jobs and benchmarks run.

The Serve graph (graphs/documents.py) runs the very same stage functions, each in its
own deployment with pages in parallel; this class chains them for one process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionserve.models.documents.config import Configuration
from visionserve.models.documents.types import Chunk, Page, Region, Segment

log = logging.getLogger(__name__)


@dataclass
class ParseResult:
    chunks: list[Chunk]
    page_count: int
    page_errors: list[dict[str, Any]] = field(default_factory=list)


def render_stage(data: bytes, page_number: int, config: Configuration, max_pages: int) -> Page:
    from visionserve.models.documents.source import load_pages

    (page,) = load_pages(
        data,
        file_name=None,
        high_resolution=config.high_resolution,
        max_pages=max_pages,
        page_numbers=[page_number],
        continue_on_error=True,
    )
    return page


def prepare_stage(data: bytes, config: Configuration) -> tuple[int, Any]:
    """Page count and the style every page's segmentation needs to agree on."""
    from visionserve.models.documents.segments import document_style
    from visionserve.models.documents.source import count_pages, text_pages

    pages = text_pages(data, high_resolution=config.high_resolution)
    return count_pages(data), document_style(pages) if pages else None


def segment_stage(
    page: Page,
    regions: list[Region] | None,
    config: Configuration,
    id_prefix: str,
    store_crop: Callable[[str, Any], str] | None = None,
    style: Any = None,
) -> list[Segment]:
    """Page (with words) + regions → segments; crops stored where the config asks."""
    from visionserve.models.documents.segments import (
        apply_segment_processing,
        attach_image,
        build_segments,
        crop,
    )

    if page.error:
        raise RuntimeError(page.error)
    segments = build_segments(
        page, regions, strategy=config.segmentation_strategy, id_prefix=id_prefix, style=style
    )
    if store_crop is not None:
        for plan in apply_segment_processing(segments, config.segment_processing):
            if plan.crop:
                seg = plan.segment
                attach_image(seg, store_crop(seg.segment_id, crop(page, seg.bbox)))
    return segments


def chunk_text(segments: list[Segment], plans: dict[str, str] | None = None) -> str:
    """What a chunk's ``embed`` says: the text its ``chunk_length`` counted."""
    from visionserve.models.documents.chunking import chunk_text as text_of

    if plans is None:
        return text_of(segments)
    return text_of(segments, lambda seg: plans.get(seg.segment_id, seg.markdown or seg.text))


def to_output(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """Chunks as the contract's JSON: ``embed`` is the text to embed (a string, as the
    chunkr SDK expects); the vector, when computed, is in ``embedding``."""
    out = []
    for chunk in chunks:
        segments = [
            {
                "segment_id": s.segment_id,
                "segment_type": str(s.segment_type),
                "bbox": vars(s.bbox),
                "confidence": s.confidence,
                "page_number": s.page_number,
                "page_width": s.page_width,
                "page_height": s.page_height,
                "text": s.text,
                "content": s.content,
                "html": s.html,
                "markdown": s.markdown,
                "llm": s.llm,
                "image": s.image,
                "ocr": [
                    {"bbox": vars(w.bbox), "text": w.text, "confidence": w.confidence}
                    for w in s.ocr
                ],
            }
            for s in chunk.segments
        ]
        out.append(
            {
                "chunk_id": chunk.chunk_id,
                "chunk_length": chunk.chunk_length,
                "segments": segments,
                "embed": chunk.embed if chunk.embed is not None else chunk_text(chunk.segments),
                "embedding": chunk.embedding,
            }
        )
    return out


class DocumentPipeline:
    """Source → OCR → layout → segments → chunks, for one process (no Ray)."""

    def __init__(
        self,
        model_home: Path,
        *,
        ocr_engine: str = "tesseract",
        threads: int = 1,
        max_pages: int = 1000,
    ) -> None:
        from visionserve.models.documents.layout import LayoutModel
        from visionserve.models.documents.ocr import get_ocr_engine

        self.model_home = Path(model_home)
        self.ocr = get_ocr_engine(ocr_engine)
        self.layout = LayoutModel(threads=threads)
        self.max_pages = max_pages
        self._embedder: Any = None

    def parse(self, data: bytes, config: Configuration) -> ParseResult:
        from visionserve.models.documents.ocr import ocr_page

        n, style = prepare_stage(data, config)
        segments: list[Segment] = []
        errors: list[dict[str, Any]] = []
        prefix = uuid.uuid4().hex[:8]
        for number in range(1, n + 1):
            try:
                page = render_stage(data, number, config, self.max_pages)
                if page.error:
                    raise RuntimeError(page.error)
                page = ocr_page(page, self.ocr, config.ocr_strategy)
                regions = (
                    self.layout.detect(page.image)
                    if config.segmentation_strategy == "LayoutAnalysis"
                    else None
                )
                segments += segment_stage(page, regions, config, f"{prefix}-{number}", None, style)
            except Exception as exc:
                if config.error_handling != "Continue":
                    raise
                errors.append({"page": number, "error": str(exc)})
        chunks = chunk_stage(segments, config, self.model_home, self._embed_fn(config))
        return ParseResult(chunks, n, errors)

    def _embed_fn(self, config: Configuration) -> Any:
        if not config.chunk_processing.embeddings:
            return None
        if self._embedder is None:
            from visionserve.models.embedding import Embedder

            self._embedder = Embedder(threads=1)
        return self._embedder.embed


def chunk_stage(
    segments: list[Segment],
    config: Configuration,
    model_home: Path,
    embed: Callable[[list[str]], list[list[float]]] | None = None,
) -> list[Chunk]:
    from visionserve.models.documents.chunking import chunk_segments
    from visionserve.models.documents.segments import apply_segment_processing
    from visionserve.models.documents.tokenizers import get_tokenizer

    processing = config.chunk_processing
    tokenizer = get_tokenizer(processing.tokenizer, model_home)
    # Each type's segment_processing decides what a segment adds to its chunk's text.
    plans = {
        p.segment.segment_id: p.embed
        for p in apply_segment_processing(segments, config.segment_processing)
    }
    chunks = chunk_segments(
        segments,
        target_length=processing.target_length,
        tokenizer=tokenizer,
        ignore_headers_and_footers=processing.ignore_headers_and_footers,
        embed_text=lambda seg: plans.get(seg.segment_id, seg.markdown or seg.text),
    )
    for chunk in chunks:
        chunk.embed = chunk_text(chunk.segments, plans)
    if embed is not None and chunks:
        vectors = embed([c.embed or "" for c in chunks])
        for chunk, vector in zip(chunks, vectors, strict=True):
            chunk.embedding = vector
    return chunks

"""The whole document graph in one process: what Ray Data batch jobs and benchmarks run.

The Serve graph (graphs/documents.py) runs the very same stage functions, each in its
own deployment with pages in parallel; this class chains them for one process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionserve.models.documents.types import Chunk, Page, Region, Segment

log = logging.getLogger(__name__)


@dataclass
class ParseResult:
    chunks: list[Chunk]
    page_count: int
    page_errors: list[dict[str, Any]] = field(default_factory=list)


def render_stage(data: bytes, page_number: int, config: dict[str, Any], max_pages: int) -> Page:
    from visionserve.models.documents.source import load_pages

    (page,) = load_pages(
        data, file_name=None, high_resolution=bool(config.get("high_resolution")),
        max_pages=max_pages, page_numbers=[page_number], continue_on_error=True,
    )
    return page


def segment_stage(
    page: Page,
    regions: list[Region] | None,
    config: dict[str, Any],
    id_prefix: str,
    store_crop: Callable[[str, Any], str] | None = None,
) -> list[Segment]:
    """Page (with words) + regions → segments; pictures and tables cropped when asked."""
    from visionserve.models.documents.segments import (
        apply_segment_processing,
        build_segments,
        crop,
    )

    if page.error:
        raise RuntimeError(page.error)
    strategy = config.get("segmentation_strategy", "LayoutAnalysis")
    segments = build_segments(page, regions, strategy=strategy, id_prefix=id_prefix)
    processing = config.get("segment_processing") or {}
    apply_segment_processing(segments, processing)
    if store_crop is not None:
        for seg in segments:
            if _wants_crop(seg, processing):
                seg.image = store_crop(seg.segment_id, crop(page, seg.bbox))
                if seg.segment_type == "Picture" and not seg.html:
                    seg.html = f'<img src="{seg.image}" />'
    return segments


def _wants_crop(seg: Segment, processing: dict[str, Any]) -> bool:
    """Pictures are always cropped (their pixels are the content); others when asked."""
    from visionserve.models.documents.llm import SEGMENT_KEY

    conf = processing.get(SEGMENT_KEY.get(str(seg.segment_type), ""), {}) or {}
    return conf.get("crop_image") == "All" or str(seg.segment_type) == "Picture"


def to_output(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """Chunks as the contract's JSON: ``embed`` is the text to embed (a string, as the
    chunkr SDK expects); the vector, when computed, is in ``embedding``."""
    out = []
    for chunk in chunks:
        segments = [
            {
                "segment_id": s.segment_id, "segment_type": str(s.segment_type),
                "bbox": vars(s.bbox), "confidence": s.confidence,
                "page_number": s.page_number, "page_width": s.page_width,
                "page_height": s.page_height, "text": s.text, "content": s.content,
                "html": s.html, "markdown": s.markdown, "llm": s.llm, "image": s.image,
                "ocr": [{"bbox": vars(w.bbox), "text": w.text, "confidence": w.confidence}
                        for w in s.ocr],
            }
            for s in chunk.segments
        ]
        out.append({
            "chunk_id": chunk.chunk_id, "chunk_length": chunk.chunk_length,
            "segments": segments,
            "embed": "\n".join(s.markdown or s.text for s in chunk.segments),
            "embedding": chunk.embed,
        })
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

    def parse(self, data: bytes, config: dict[str, Any]) -> ParseResult:
        from visionserve.models.documents.ocr import ocr_page
        from visionserve.models.documents.source import count_pages

        n = count_pages(data)
        segments: list[Segment] = []
        errors: list[dict[str, Any]] = []
        prefix = uuid.uuid4().hex[:8]
        for number in range(1, n + 1):
            try:
                page = render_stage(data, number, config, self.max_pages)
                if page.error:
                    raise RuntimeError(page.error)
                page = ocr_page(page, self.ocr, config.get("ocr_strategy", "All"))
                regions = (
                    self.layout.detect(page.image)
                    if config.get("segmentation_strategy", "LayoutAnalysis") == "LayoutAnalysis"
                    else None
                )
                segments += segment_stage(page, regions, config, f"{prefix}-{number}")
            except Exception as exc:
                if config.get("error_handling") != "Continue":
                    raise
                errors.append({"page": number, "error": str(exc)})
        chunks = chunk_stage(segments, config, self.model_home, self._embed_fn(config))
        return ParseResult(chunks, n, errors)

    def _embed_fn(self, config: dict[str, Any]) -> Any:
        if not (config.get("chunk_processing") or {}).get("embeddings"):
            return None
        if self._embedder is None:
            from visionserve.models.documents.embedding import Embedder

            self._embedder = Embedder()
        return self._embedder.embed


def chunk_stage(
    segments: list[Segment],
    config: dict[str, Any],
    model_home: Path,
    embed: Callable[[list[str]], list[list[float]]] | None = None,
) -> list[Chunk]:
    from visionserve.models.documents.chunking import chunk_segments
    from visionserve.models.documents.tokenizers import get_tokenizer

    processing = config.get("chunk_processing") or {}
    tokenizer = get_tokenizer(processing.get("tokenizer") or "Word", model_home)
    chunks = chunk_segments(
        segments,
        target_length=int(processing.get("target_length") or 512),
        tokenizer=tokenizer,
        ignore_headers_and_footers=bool(processing.get("ignore_headers_and_footers", True)),
    )
    if embed is not None and chunks:
        texts = ["\n".join(s.markdown or s.text for s in c.segments) for c in chunks]
        for chunk, vector in zip(chunks, embed(texts), strict=True):
            chunk.embed = vector
    return chunks


async def run_async(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)

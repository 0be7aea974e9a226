"""The optional VLM engine: an OpenAI-compatible vision model answers the schema.

The page images go to ``POST /chat/completions`` (the shared client in
``platform.llm``) with the pattern's schema as a strict ``response_format:
json_schema`` at temperature 0, and the page words as text beside them. The answer
must be JSON that fits the schema; each value is then grounded to the page words
(:func:`engine.locate`) for its page, box and source text. A value the words do not
contain keeps a low confidence: the model may have read it right, or made it up.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import numpy as np
from PIL import Image

from visionserve.models.extraction.document import DocPage
from visionserve.models.extraction.engine import Extraction, locate
from visionserve.models.extraction.schema import ExtractionFailed, ExtractionSchema, FieldSpec
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.llm import LlmClient
from visionserve.settings import LlmSettings

PROMPT = (
    "You read business documents (invoices, receipts, forms). Extract the fields of the "
    "JSON schema from the document image. Copy values as printed; write dates as "
    "YYYY-MM-DD and numbers as plain numbers without currency symbols or thousands "
    "separators. A field that is not on the document is null: never guess or invent. "
    "The words found on the page follow as text, to help you read it."
)
# The whole document goes as one image: pages stacked, scaled to fit this many pixels.
MAX_IMAGE_PIXELS = 4_000_000
MAX_TEXT_CHARS = 12_000
# A value found on the page is as sure as the words it matched; one that is not on
# the page (the model may have read the image right, or made it up) gets this.
UNGROUNDED_CONFIDENCE = 0.4
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


class VlmExtractor:
    """Extraction by an OpenAI-compatible vision model (vLLM, Ollama, llama.cpp).

    Args:
        settings: The endpoint, model, key and timeout (``settings.extract.vlm``).
        egress: The policy the endpoint's URL must pass.
    """

    def __init__(self, settings: LlmSettings, egress: EgressPolicy) -> None:
        self.client = LlmClient(settings, egress)

    async def extract(
        self, pages: list[DocPage], schema: ExtractionSchema, instructions: str = ""
    ) -> Extraction:
        """The schema's result from the model, checked and grounded to ``pages``.

        Raises:
            ServiceUnavailable: The endpoint is unreachable, timed out or answered an
                HTTP error.
            ExtractionFailed: The answer is not JSON or does not fit the schema.
        """
        image = await asyncio.to_thread(stacked_png, pages)
        prompt = PROMPT + (f"\n\nInstructions: {instructions}" if instructions.strip() else "")
        answer = await self.client.complete(
            prompt,
            page_text(pages),
            image,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "extraction",
                    "strict": True,
                    "schema": schema.to_json_schema(strict=True),
                },
            },
        )
        result = parse_answer(answer)
        schema.validate_result(result)
        metadata, scores = _ground(schema.root, result, pages)
        confidence = sum(scores) / len(scores) if scores else 0.0
        return Extraction(result=result, field_metadata=metadata, confidence=confidence)


def parse_answer(answer: str) -> dict[str, Any]:
    """The model's JSON object (a Markdown code fence around it is tolerated)."""
    text = _FENCE.sub("", answer.strip())
    try:
        value = json.loads(text)
    except ValueError:
        raise ExtractionFailed("The VLM's answer is not JSON") from None
    if not isinstance(value, dict):
        raise ExtractionFailed("The VLM's answer is not a JSON object")
    return value


def page_text(pages: list[DocPage]) -> str:
    """The pages' words, in reading order, capped at ``MAX_TEXT_CHARS``."""
    parts = []
    for page in pages:
        words = sorted(page.words, key=lambda w: (round(w.bbox.top / 10), w.bbox.left))
        parts.append(f"--- page {page.number} ---\n" + " ".join(w.text for w in words))
    return "\n".join(parts)[:MAX_TEXT_CHARS]


def stacked_png(pages: list[DocPage], max_pixels: int = MAX_IMAGE_PIXELS) -> bytes | None:
    """The page images one below the other, scaled down to at most ``max_pixels``."""
    images = [
        Image.fromarray(np.asarray(p.image)).convert("RGB") for p in pages if p.image is not None
    ]
    if not images:
        return None
    width = max(i.width for i in images)
    height = sum(i.height for i in images)
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    width_s = max(1, round(width * scale))
    sheet = Image.new("RGB", (width_s, max(1, round(height * scale))), "white")
    top = 0
    for img in images:
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        sheet.paste(img.resize((w, h), Image.Resampling.LANCZOS), (0, top))
        top += h
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _ground(node: FieldSpec, value: Any, pages: list[DocPage]) -> tuple[Any, list[float]]:
    """``field_metadata`` mirroring ``value``'s shape, and every leaf's confidence."""
    if node.kind == "object":
        meta: dict[str, Any] = {}
        scores: list[float] = []
        for child in node.children:
            meta[child.name], child_scores = _ground(
                child, (value or {}).get(child.name) if isinstance(value, dict) else None, pages
            )
            scores += child_scores
        return meta, scores
    if node.kind == "array":
        items = value if isinstance(value, list) else []
        metas, scores = [], []
        for item in items:
            if node.items is None:
                continue
            item_meta, item_scores = _ground(node.items, item, pages)
            metas.append(item_meta)
            scores += item_scores
        return metas, scores
    if value is None:
        return _leaf(0.0), [0.0]
    hit = locate(str(value), pages)
    if hit is None:
        return _leaf(UNGROUNDED_CONFIDENCE), [UNGROUNDED_CONFIDENCE]
    page, bbox, source_text, score = hit
    return _leaf(score, page, bbox, source_text), [score]


def _leaf(
    confidence: float,
    page: int | None = None,
    bbox: list[float] | None = None,
    source_text: str | None = None,
) -> dict[str, Any]:
    return {
        "confidence": round(confidence, 3),
        "page": page,
        "bbox": bbox,
        "source_text": source_text,
    }

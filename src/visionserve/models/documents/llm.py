"""llm_processing through an OpenAI-compatible chat endpoint (optional).

Only segments whose ``segment_processing`` asks for the LLM (``strategy: "LLM"``,
``html``/``markdown: "LLM"`` or an ``llm`` prompt) are sent; the answer fills the
segment's ``llm`` field (and html/markdown when those were asked for).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx

from visionserve.egress import EgressPolicy, pinned_request_args
from visionserve.errors import ServiceUnavailable
from visionserve.models.documents.types import Segment
from visionserve.settings import LlmSettings

log = logging.getLogger(__name__)

SEGMENT_KEY = {
    "Title": "title",
    "SectionHeader": "section_header",
    "Text": "text",
    "ListItem": "list_item",
    "Table": "table",
    "Picture": "picture",
    "Caption": "caption",
    "Formula": "formula",
    "Footnote": "footnote",
    "PageHeader": "page_header",
    "PageFooter": "page_footer",
    "Page": "page",
}
DEFAULT_PROMPT = "Convert this document segment to {fmt}. Answer with the {fmt} only."


def wants_llm(config: dict[str, Any] | None) -> bool:
    config = config or {}
    return bool(
        config.get("strategy") == "LLM"
        or config.get("html") == "LLM"
        or config.get("markdown") == "LLM"
        or config.get("llm")
    )


class LlmClient:
    """POST /chat/completions, the OpenAI protocol most local servers speak."""

    def __init__(self, settings: LlmSettings, egress: EgressPolicy) -> None:
        if not settings.base_url:
            raise ValueError("no LLM endpoint configured")
        self.settings = settings
        self.egress = egress

    async def complete(self, prompt: str, text: str, image_png: bytes | None = None) -> str:
        content: list[dict[str, Any]] = [{"type": "text", "text": f"{prompt}\n\n{text}"}]
        if image_png:
            uri = "data:image/png;base64," + base64.b64encode(image_png).decode()
            content.append({"type": "image_url", "image_url": {"url": uri}})
        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
        }
        url = f"{str(self.settings.base_url).rstrip('/')}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        target = self.egress.check(url)
        pinned, host, extensions = pinned_request_args(target, url)
        try:
            async with httpx.AsyncClient(**self.egress.client_kwargs()) as client:
                r = await client.post(
                    pinned,
                    json=body,
                    headers={**headers, **host},
                    extensions=extensions,
                    timeout=self.settings.timeout_s,
                )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"LLM endpoint unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise ServiceUnavailable(f"LLM endpoint answered HTTP {r.status_code}")
        try:
            return str(r.json()["choices"][0]["message"]["content"]).strip()
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ServiceUnavailable("LLM endpoint gave a malformed answer") from exc

    async def process(
        self, segment: Segment, config: dict[str, Any], crop_png: bytes | None = None
    ) -> None:
        """Fill ``segment.llm`` (and html/markdown when asked) from the model."""
        if config.get("html") == "LLM" or config.get("format") == "Html":
            fmt = "HTML"
        else:
            fmt = "Markdown"
        prompt = config.get("llm") or DEFAULT_PROMPT.format(fmt=fmt)
        answer = await self.complete(prompt, segment.text, crop_png)
        segment.llm = answer
        if config.get("html") == "LLM":
            segment.html = answer
        if config.get("markdown") == "LLM":
            segment.markdown = answer

"""llm_processing for documents: which segments ask the LLM, what it is asked, and the answer.

A segment is sent when its type's options want the LLM (``strategy: "LLM"``,
``html``/``markdown: "LLM"`` or an ``llm`` prompt, see
:attr:`~visionserve.models.documents.config.SegmentOptions.needs_llm`); the answer fills
the segment's ``llm`` field, and its html/markdown when those fields asked for it. The
endpoint itself is :class:`~visionserve.platform.llm.LlmClient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from visionserve.models.documents.config import Configuration, SegmentOptions
from visionserve.models.documents.types import Segment
from visionserve.platform.llm import LlmClient

DEFAULT_PROMPT = "Convert this document segment to {fmt}. Answer with the {fmt} only."
LlmOutcome = Literal["applied", "not_configured"]


def llm_requests(
    segments: Sequence[Segment], config: Configuration
) -> list[tuple[Segment, SegmentOptions]]:
    """The segments whose type asks for the LLM, each with its type's options."""
    wanted = []
    for segment in segments:
        options = config.segment_processing.options(segment.segment_type)
        if options.needs_llm:
            wanted.append((segment, options))
    return wanted


async def fill_segment(
    client: LlmClient, segment: Segment, options: SegmentOptions, crop_png: bytes | None = None
) -> None:
    """Fill ``segment.llm`` (and html/markdown where asked) from the model's answer."""
    fmt = "HTML" if options.html_llm or options.format == "Html" else "Markdown"
    prompt = options.llm or DEFAULT_PROMPT.format(fmt=fmt)
    answer = await client.complete(prompt, segment.text, crop_png)
    segment.llm = answer
    if options.html_llm:
        segment.html = answer
    if options.markdown_llm:
        segment.markdown = answer


async def process_segments(
    segments: Sequence[Segment], config: Configuration, client: LlmClient | None
) -> LlmOutcome | None:
    """Ask the LLM for every segment that wants it, concurrently.

    Args:
        segments: The document's segments (changed in place).
        config: The task's configuration.
        client: The configured endpoint, or None when there is none.

    Returns:
        None when nothing asked for the LLM, ``not_configured`` when something did but
        there is no endpoint, else ``applied``.

    Raises:
        ServiceUnavailable: The endpoint failed for one of the segments.
    """
    todo = llm_requests(segments, config)
    if not todo and config.llm_processing is None:
        return None
    if client is None:
        return "not_configured"
    await asyncio.gather(*(fill_segment(client, seg, opts) for seg, opts in todo))
    return "applied"

"""Segment processing: what each built segment's type configuration asks of it.

Whether to crop its image, whether the LLM is wanted, what it adds to its chunk's
embed text, and whether page headers and footers stay. The options themselves are
resolved, defaults included, by :class:`~visionserve.models.documents.config.SegmentProcessing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from visionserve.models.documents.config import SegmentOptions, SegmentProcessing, validated
from visionserve.models.documents.types import Segment, SegmentType


@dataclass
class SegmentPlan:
    """What post-processing a segment needs, from its type's options.

    Attributes:
        segment: The segment (not copied).
        options: Its type's resolved options.
        crop: The caller should crop the page image to ``segment.bbox`` (see :func:`crop`),
            store it and call :func:`attach_image`.
        needs_llm: The configuration asks for LLM output for this segment.
        embed: The text this segment contributes to its chunk's ``embed``.
    """

    segment: Segment
    options: SegmentOptions
    crop: bool
    needs_llm: bool
    embed: str


def apply_segment_processing(
    segments: Sequence[Segment], processing: SegmentProcessing | Mapping[str, Any] | None
) -> list[SegmentPlan]:
    """Decide per segment what to crop, whether an LLM is wanted, and what to embed.

    Args:
        segments: Segments in reading order.
        processing: The configuration's ``segment_processing`` (a plain mapping is
            validated first).

    Returns:
        One plan per segment, same order. ``Ignore`` keeps the segment but drops its
        HTML/Markdown from the embed text.

    Raises:
        BadRequest: A mapping with a value outside the contract's enums.
    """
    config = validated(SegmentProcessing, processing)
    plans = []
    for seg in segments:
        opts = config.options(seg.segment_type)
        crop_it = (
            opts.crop_image == "All" or opts.needs_llm or seg.segment_type == SegmentType.PICTURE
        )
        plans.append(SegmentPlan(seg, opts, crop_it, opts.needs_llm, _embed_text(seg, opts)))
    return plans


def drop_headers_footers(segments: Iterable[Segment]) -> list[Segment]:
    """The segments without page headers and footers (``ignore_headers_and_footers``)."""
    skip = (SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER)
    return [s for s in segments if s.segment_type not in skip]


def _embed_text(segment: Segment, options: SegmentOptions) -> str:
    fields = {
        "Content": segment.content,
        "HTML": segment.html,
        "Markdown": segment.markdown,
        "LLM": segment.llm or "",
    }
    return "\n".join(fields[s] for s in options.embed_sources if fields[s])

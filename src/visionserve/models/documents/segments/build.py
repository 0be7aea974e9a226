"""One page → typed segments in reading order: the steps of the other modules, in order."""

from __future__ import annotations

from collections.abc import Sequence

from visionserve.errors import BadRequest
from visionserve.models.documents.config import SegmentationStrategy
from visionserve.models.documents.segments.classification import (
    classify_block,
    image_text_drafts,
    join_wrapped_items,
    line_blocks,
    page_context,
)
from visionserve.models.documents.segments.draft import Draft
from visionserve.models.documents.segments.lines import image_text_lines, page_lines
from visionserve.models.documents.segments.reading_order import order_drafts
from visionserve.models.documents.segments.regions import (
    attach_image_lines,
    dedupe,
    picture_drafts,
    table_drafts,
)
from visionserve.models.documents.segments.rendering import page_segment, to_segment
from visionserve.models.documents.segments.style import DocumentStyle
from visionserve.models.documents.types import Page, Region, Segment


def build_segments(
    page: Page,
    regions: Sequence[Region] | None,
    *,
    strategy: SegmentationStrategy = "LayoutAnalysis",
    id_prefix: str,
    style: DocumentStyle | None = None,
) -> list[Segment]:
    """Split one page into typed segments in reading order.

    Args:
        page: The page (text layer and/or OCR words).
        regions: The layout detector's regions for ``page.image``, or None without a detector.
        strategy: ``LayoutAnalysis`` (typed segments) or ``Page`` (one ``Page`` segment).
        id_prefix: Segment ids are ``f"{id_prefix}-{index}"``.
        style: Document-wide facts from :func:`document_style`; None judges this page
            alone (running headers then need the detector or a page-number pattern).

    Returns:
        The segments; empty for a page that failed (``page.error``) or holds nothing.

    Raises:
        BadRequest: An unknown strategy.
    """
    if strategy not in ("LayoutAnalysis", "Page"):
        raise BadRequest(f"unknown segmentation_strategy {strategy!r}: LayoutAnalysis or Page")
    if page.error is not None:
        return []
    detected = list(regions) if regions is not None else None
    drafts = order_drafts(_layout_drafts(page, detected, style), page.width)
    segments = [to_segment(d, page, f"{id_prefix}-{i}") for i, d in enumerate(drafts)]
    if strategy == "LayoutAnalysis":
        return segments
    return [page_segment(page, segments, f"{id_prefix}-0")]


def _layout_drafts(
    page: Page, detected: list[Region] | None, style: DocumentStyle | None
) -> list[Draft]:
    """Tables, then pictures, then every other line typed block by block."""
    lines, text_layer = page_lines(page)
    # Text the layer lacks (a logo's name, a screenshot's words) that OCR read: it joins
    # the picture it lies in, or stands as plain text. No word of the page is dropped.
    image_lines = image_text_lines(page) if text_layer else []
    regions = dedupe(detected or [])
    ctx = page_context(page, lines, regions, style, text_layer)

    drafts, lines = table_drafts(page, lines, regions)
    # Without a detector, pictures come from the rendered ink; with one, the detector is
    # trusted (ink boxes misfire where an invisible OCR layer does not match the glyphs).
    use_ink = detected is None and text_layer
    pictures, lines = picture_drafts(page, lines, regions, [d.bbox for d in drafts], use_ink)
    image_lines = attach_image_lines(pictures, image_lines)
    drafts += pictures

    for block_lines, hint in line_blocks(lines, ctx):
        drafts += classify_block(block_lines, hint, ctx)
    drafts += image_text_drafts(image_lines)
    return join_wrapped_items(drafts)

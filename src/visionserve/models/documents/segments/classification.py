"""Segment types for the lines no table or picture claimed, block by block.

Lines are grouped into blocks (the PDF's own blocks, or detector regions and
proximity for OCR), then typed by line rules (running header/footer, title, section
header, list item) and block rules (caption, formula, footnote, the detector's hint).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from visionserve.models.documents.segments.draft import Draft
from visionserve.models.documents.segments.geometry import (
    coverage,
    in_margin,
    mid_y,
    union,
    weighted_median,
)
from visionserve.models.documents.segments.lines import Line
from visionserve.models.documents.segments.patterns import (
    BULLET_RE,
    CAPTION_RE,
    ENUM_RE,
    PAGE_NUMBER_RE,
    looks_like_formula,
    normalise,
)
from visionserve.models.documents.segments.style import DocumentStyle, title_size
from visionserve.models.documents.types import Page, Region, SegmentType

# Lines below this fraction of the page height with small type are footnotes.
_FOOTNOTE_TOP = 0.6
_SMALL = 0.85  # "small type": size at most this times the body size


@dataclass
class Context:
    """What the rules know about the page being classified."""

    page: Page
    regions: list[Region]
    body: float
    title_size: float | None
    header_ratio: float  # size/body above which a line is a section header
    running: frozenset[str]
    text_layer: bool
    # Page 1's top-most detector title, used only when type sizes show no title.
    title_region: Region | None = None


def page_context(
    page: Page,
    lines: list[Line],
    regions: list[Region],
    style: DocumentStyle | None,
    text_layer: bool,
) -> Context:
    """The page's body size, title size and header threshold (the document's where known)."""
    page_body = weighted_median([(line.size, len(line.text)) for line in lines]) or 1.0
    # OCR heights jitter with ascenders and descenders: demand a bigger jump for headings.
    header_ratio, title_ratio = (1.15, 1.3) if text_layer else (1.3, 1.5)
    running = style.running if style is not None else frozenset()
    if text_layer and style is not None and style.body_size:
        body, title = style.body_size, style.title_size
    else:
        body = page_body
        title = (
            title_size(lines, body, page.height, title_ratio, running) if page.number == 1 else None
        )
    title_region = None
    if page.number == 1 and title is None:
        titles = [r for r in regions if r.segment_type == SegmentType.TITLE]
        title_region = min(titles, key=lambda r: r.bbox.top, default=None)
    return Context(page, regions, body, title, header_ratio, running, text_layer, title_region)


def line_blocks(lines: list[Line], ctx: Context) -> list[tuple[list[Line], Region | None]]:
    """Group lines into blocks, each with the detector region that best explains it."""
    text_regions = [
        r for r in ctx.regions if r.segment_type not in (SegmentType.TABLE, SegmentType.PICTURE)
    ]
    if ctx.text_layer:
        grouped: dict[Hashable, list[Line]] = {}
        for line in lines:
            grouped.setdefault(line.block, []).append(line)
        return [(members, _vote(members, text_regions)) for members in grouped.values()]
    # OCR: a detector region is the block; lines outside every region are grouped by proximity.
    by_region: dict[int, list[Line]] = {}
    loose: list[Line] = []
    for line in lines:
        best = max(
            range(len(text_regions)),
            key=lambda i: coverage(line.bbox, text_regions[i].bbox),
            default=None,
        )
        if best is not None and coverage(line.bbox, text_regions[best].bbox) >= 0.5:
            by_region.setdefault(best, []).append(line)
        else:
            loose.append(line)
    blocks: list[tuple[list[Line], Region | None]] = [
        (members, text_regions[i]) for i, members in by_region.items()
    ]
    return blocks + [(members, None) for members in _proximity_blocks(loose)]


def image_text_drafts(lines: list[Line]) -> list[Draft]:
    """Text OCR read outside the text layer and outside every picture: plain ``Text``.

    One draft per group of nearby lines. The type rules stay out of it: OCR box
    heights are not comparable with the layer's font sizes, and a logo's name in the
    top margin is not a running header to be dropped.
    """
    drafts = []
    for block in _proximity_blocks(lines):
        confidence = float(np.mean([w.confidence for line in block for w in line.words] or [1.0]))
        drafts.append(Draft(SegmentType.TEXT, union(ln.bbox for ln in block), confidence, block))
    return drafts


def _proximity_blocks(lines: list[Line]) -> list[list[Line]]:
    blocks: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox.top, ln.bbox.left)):
        for block in blocks:
            last = block[-1]
            gap = line.bbox.top - last.bbox.bottom
            overlap = min(line.bbox.right, last.bbox.right) - max(line.bbox.left, last.bbox.left)
            similar = 0.8 <= line.size / max(last.size, 1e-6) <= 1.25
            if -0.5 * last.bbox.height < gap < 0.9 * last.bbox.height and overlap > 0 and similar:
                block.append(line)
                break
        else:
            blocks.append([line])
    return blocks


def _vote(lines: list[Line], regions: list[Region]) -> Region | None:
    """The region type covering most of the block's text, weighted by confidence."""
    area = sum(line.bbox.area for line in lines) or 1.0
    best: tuple[float, Region | None] = (0.0, None)
    for region in regions:
        covered = sum(line.bbox.intersection_area(region.bbox) for line in lines)
        if covered >= 0.5 * area and covered * region.confidence > best[0]:
            best = (covered * region.confidence, region)
    return best[1]


def classify_block(lines: list[Line], hint: Region | None, ctx: Context) -> list[Draft]:
    """Type a block's lines (line rules first, then the block's type) into drafts."""
    lines = (
        sorted(lines, key=lambda ln: (ln.bbox.top, ln.bbox.left)) if not ctx.text_layer else lines
    )
    plain_type, plain_conf = _block_type(lines, hint, ctx)
    rows = _rows(lines)
    drafts: list[Draft] = []
    for line in lines:
        kind = _line_type(line, rows, hint, ctx)
        current = drafts[-1] if drafts else None
        if kind == SegmentType.LIST_ITEM:
            drafts.append(Draft(kind, line.bbox, 1.0, [line]))
            continue
        if kind is None:
            if current is not None and _continues_item(current, line):
                kind = SegmentType.LIST_ITEM
            else:
                kind = plain_type
        confidence = plain_conf if kind == plain_type else 1.0
        if current is not None and current.seg_type == kind and _adjacent(current, line):
            current.lines.append(line)
            current.bbox = union([current.bbox, line.bbox])
        else:
            drafts.append(Draft(kind, line.bbox, confidence, [line]))
    return drafts


def _line_type(
    line: Line, block_rows: int, hint: Region | None, ctx: Context
) -> SegmentType | None:
    """Types a single line carries on its own (else None: the block decides)."""
    height = ctx.page.height
    if in_margin(line.bbox, height) and _is_running(line, hint, ctx):
        top = mid_y(line.bbox) < height / 2
        return SegmentType.PAGE_HEADER if top else SegmentType.PAGE_FOOTER
    words = len(line.text.split())
    # Display formulas are often set larger than the body: size alone does not make a heading.
    heading_like = not looks_like_formula(line.text)
    title = ctx.title_size
    if heading_like and title and ctx.page.number == 1 and line.size >= 0.97 * title:
        return SegmentType.TITLE
    if heading_like and line.size >= ctx.header_ratio * ctx.body and words <= 20:
        return SegmentType.SECTION_HEADER
    if (
        ctx.text_layer
        and block_rows == 1
        and line.bold
        and words <= 12
        and line.size >= 0.95 * ctx.body
        and not line.text.rstrip().endswith((".", ",", ";", ":"))
    ):
        return SegmentType.SECTION_HEADER
    if BULLET_RE.match(line.text) or ENUM_RE.match(line.text):
        return SegmentType.LIST_ITEM
    return None


def _is_running(line: Line, hint: Region | None, ctx: Context) -> bool:
    norm = normalise(line.text)
    if norm in ctx.running or PAGE_NUMBER_RE.match(norm):
        return True
    bands = (SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER)
    if hint is not None and hint.segment_type in bands:
        return True
    return any(r.segment_type in bands and coverage(line.bbox, r.bbox) >= 0.5 for r in ctx.regions)


def _block_type(lines: list[Line], hint: Region | None, ctx: Context) -> tuple[SegmentType, float]:
    """The type of a block's ordinary lines (those no line rule claims)."""
    text = " ".join(line.text for line in lines)
    size = weighted_median([(line.size, len(line.text)) for line in lines]) or ctx.body
    top = min(line.bbox.top for line in lines)
    if CAPTION_RE.match(lines[0].text):
        return SegmentType.CAPTION, 1.0
    if _rows(lines) <= 2 and looks_like_formula(text):
        return SegmentType.FORMULA, 1.0
    if size <= _SMALL * ctx.body and top >= _FOOTNOTE_TOP * ctx.page.height:
        return SegmentType.FOOTNOTE, 1.0
    if hint is None:
        return SegmentType.TEXT, 1.0
    kind = hint.segment_type
    if kind in (SegmentType.CAPTION, SegmentType.FORMULA):
        return kind, hint.confidence
    if kind == SegmentType.FOOTNOTE and size <= ctx.body * 1.05:
        return kind, hint.confidence
    if kind == SegmentType.TITLE and _rows(lines) <= 2 and len(text.split()) <= 20:
        if hint is ctx.title_region:
            return SegmentType.TITLE, hint.confidence
        # CDLA calls every heading a title; the size rules find the document's real title.
        return SegmentType.SECTION_HEADER, hint.confidence
    return SegmentType.TEXT, (hint.confidence if kind == SegmentType.TEXT else 1.0)


def join_wrapped_items(drafts: list[Draft]) -> list[Draft]:
    """Give a list item back the wrapped lines the PDF put in the next block.

    A text draft moves only when every one of its lines hangs under the item (right
    of the marker, directly below): a following paragraph with a first-line indent
    has a second line at the margin and stays.
    """
    items = [d for d in drafts if d.seg_type == SegmentType.LIST_ITEM]
    out = []
    for draft in drafts:
        if items and draft.seg_type == SegmentType.TEXT and draft.lines and not draft.extra_text:
            item = next(
                (i for i in items if _continues_item(i, draft.lines[0], hanging=True)), None
            )
            if item is not None and _all_hang(item, draft.lines):
                item.lines += draft.lines
                item.bbox = union([item.bbox, draft.bbox])
                continue
        out.append(draft)
    return out


def _all_hang(item: Draft, lines: list[Line]) -> bool:
    probe = Draft(item.seg_type, item.bbox, item.confidence, list(item.lines))
    for line in lines:
        if not _continues_item(probe, line, hanging=True):
            return False
        probe.lines.append(line)
    return True


def _rows(lines: list[Line]) -> int:
    """Visual rows in a block (a text layer may split one row into several lines)."""
    rows = 0
    bottom = -np.inf
    for line in sorted(lines, key=lambda ln: ln.bbox.top):
        if line.bbox.top > bottom - 0.5 * line.bbox.height:
            rows += 1
        bottom = max(bottom, line.bbox.bottom)
    return rows


def _continues_item(item: Draft, line: Line, *, hanging: bool = False) -> bool:
    """A wrapped list-item line: right under the item, not left of its marker."""
    if item.seg_type != SegmentType.LIST_ITEM:
        return False
    first, last = item.lines[0], item.lines[-1]
    gap = line.bbox.top - last.bbox.bottom
    indent = line.bbox.left - first.bbox.left
    # Text layers often overlap consecutive line boxes by a few pixels: allow a small negative gap.
    below = -0.5 * last.bbox.height < gap < 0.8 * max(last.bbox.height, 1.0)
    overlaps = line.bbox.left < last.bbox.right
    return below and overlaps and (indent > 2 if hanging else indent >= -2)


def _adjacent(draft: Draft, line: Line) -> bool:
    """Lines of one block stay together unless a wide vertical gap separates them."""
    last = draft.lines[-1] if draft.lines else None
    if last is None:
        return False
    return line.bbox.top - last.bbox.bottom < 1.5 * max(last.bbox.height, line.bbox.height, 1.0)

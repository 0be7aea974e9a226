"""Page → segments, in the chunkr contract's terms (Ray-free).

Two sources of structure are merged:

* the PDF's own text layer (``Page.spans``: exact text and font sizes) and table
  finder (``Page.tables``), trusted first where they exist;
* the layout detector's regions (:class:`~visionserve.models.documents.layout.LayoutModel`),
  used for what the text layer cannot say (pictures, captions, formulas, header and
  footer bands) and, on pages without a text layer, as the frame the OCR words
  (``Page.words``) are poured into.

Every word of the page ends up in exactly one segment: lines no rule claims become
``Text``. Segments come back in reading order (columns left to right, each top to
bottom; full-width blocks such as titles split the flow), page headers first and
page footers last.

Typical use::

    style = document_style(pages)
    for page in pages:
        segments = build_segments(page, detector.detect(page.image), strategy="LayoutAnalysis",
                                  id_prefix=f"{task_id}-p{page.number}", style=style)
"""

from __future__ import annotations

import html
import itertools
import logging
import re
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from visionserve.errors import BadRequest
from visionserve.models.documents.types import (
    BBox,
    Page,
    Region,
    Segment,
    SegmentType,
    TextSpan,
    Word,
)

log = logging.getLogger(__name__)

SegmentationStrategy = Literal["LayoutAnalysis", "Page"]

# A line whose centre lies in the top/bottom tenth of the page may be a running header/footer.
_MARGIN = 0.10
# Lines below this fraction of the page height with small type are footnotes.
_FOOTNOTE_TOP = 0.6
_SMALL = 0.85  # "small type": size at most this times the body size

_CAPTION_RE = re.compile(
    r"^(?:fig(?:ure)?\.?|table|tab\.|chart|exhibit|plate|diagram|graph|image)\s*"
    r"[0-9IVXivx]+[a-z]?(?:[.\-][0-9]+)*\s*[:.\-–—|]",
    re.IGNORECASE,
)
_BULLETS = "•◦▪▫‣⁃∙·●○■□►▶➢✓✔*-–—"
_BULLET_RE = re.compile(rf"^\s*[{re.escape(_BULLETS)}]\s+(?=\S)")
_ENUM_RE = re.compile(r"^\s*\(?(?:\d{1,3}|[a-z]|[A-Z](?=\))|i{1,3}|iv|vi{0,3}|ix|x)[.)]\s+(?=\S)")
_PAGE_NUMBER_RE = re.compile(r"^(?:page\s*)?[-–—]?\s*#+\s*[-–—]?(?:\s*(?:of|/)\s*#+)?$")
# Operators that make a short line a formula rather than prose.
_MATH = set("=≤≥≈≠∑∏∫√∞∂±×÷^")
_MATH_WORDS = {"sin", "cos", "tan", "log", "exp", "max", "min", "lim", "det", "sup", "inf", "arg"}
_WORDY_RE = re.compile(r"[A-Za-z]{3,}")


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentStyle:
    """Facts about the whole document that one page cannot tell on its own.

    Attributes:
        body_size: Dominant font size of the text layer (in ``TextSpan.font_size`` units);
            None: judge each page alone.
        title_size: Size of the largest text on page 1 when it stands out as a title.
        running: Normalised margin texts repeated on two or more pages (digits folded to ``#``).
    """

    body_size: float | None = None
    title_size: float | None = None
    running: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SegmentOptions:
    """One segment type's resolved ``segment_processing`` configuration.

    Attributes:
        format: Which rendering is the segment's primary content.
        strategy: ``Auto`` (rules), ``LLM`` (caller may fill ``Segment.llm``) or ``Ignore``
            (the segment stays but contributes no HTML/Markdown to its chunk's embed text).
        crop_image: ``All`` always crops the segment's image; ``Auto`` only when needed
            (pictures, and LLM generation which looks at the crop).
        embed_sources: Segment fields joined into the chunk's embed text:
            ``Content``, ``HTML``, ``Markdown``, ``LLM``.
        llm: A custom LLM prompt (legacy ``llm`` field), or None.
        html_llm: The legacy ``html`` field asked for LLM generation.
        markdown_llm: The legacy ``markdown`` field asked for LLM generation.
    """

    format: Literal["Html", "Markdown"] = "Markdown"
    strategy: Literal["Auto", "LLM", "Ignore"] = "Auto"
    crop_image: Literal["All", "Auto"] = "Auto"
    embed_sources: tuple[str, ...] = ("Markdown",)
    llm: str | None = None
    html_llm: bool = False
    markdown_llm: bool = False


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


def document_style(pages: Sequence[Page]) -> DocumentStyle:
    """Measure body/title font sizes and running headers/footers across pages.

    Args:
        pages: The document's pages (page 1 decides the title size).

    Returns:
        The style to pass to :func:`build_segments` for each page.
    """
    margin_texts: Counter[str] = Counter()
    sizes: list[tuple[float, int]] = []
    first_page_lines: list[_Line] = []
    for page in pages:
        lines, from_text_layer = _page_lines(page)
        margin_texts.update(
            {_normalise(line.text) for line in lines if _in_margin(line.bbox, page.height)}
        )
        if not from_text_layer:
            continue
        sizes.extend((line.size, len(line.text)) for line in lines)
        if page.number == 1:
            first_page_lines = lines
    running = frozenset(t for t, n in margin_texts.items() if n >= 2 and t)
    body = _weighted_median(sizes)
    title = None
    if body and first_page_lines:
        page1 = next(p for p in pages if p.number == 1)
        title = _title_size(first_page_lines, body, page1.height, ratio=1.3, running=running)
    return DocumentStyle(body_size=body, title_size=title, running=running)


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
    drafts = _order(_layout_drafts(page, detected, style), page.width)
    segments = [_to_segment(d, page, f"{id_prefix}-{i}") for i, d in enumerate(drafts)]
    if strategy == "LayoutAnalysis":
        return segments
    return [_page_segment(page, segments, f"{id_prefix}-0")]


def crop(page: Page, bbox: BBox, *, pad: int = 2) -> Image.Image:
    """Cut a segment's box out of the page image (for pictures and tables).

    Args:
        page: The page whose image the box refers to.
        bbox: The box in page-image pixels.
        pad: Pixels of context added on every side (clipped to the page).

    Returns:
        An RGB image of at least 1×1 pixel.
    """
    x0 = int(np.clip(np.floor(bbox.left) - pad, 0, page.width - 1))
    y0 = int(np.clip(np.floor(bbox.top) - pad, 0, page.height - 1))
    x1 = int(np.clip(np.ceil(bbox.right) + pad, x0 + 1, page.width))
    y1 = int(np.clip(np.ceil(bbox.bottom) + pad, y0 + 1, page.height))
    return Image.fromarray(np.ascontiguousarray(page.image[y0:y1, x0:x1, :3])).convert("RGB")


def attach_image(segment: Segment, url: str) -> None:
    """Set a segment's cropped-image URL; a picture's HTML/Markdown then show it."""
    segment.image = url
    if segment.segment_type == SegmentType.PICTURE:
        segment.html, segment.markdown = _render(segment.segment_type, segment.text, None, url)


def drop_headers_footers(segments: Iterable[Segment]) -> list[Segment]:
    """The segments without page headers and footers (``ignore_headers_and_footers``)."""
    skip = (SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER)
    return [s for s in segments if s.segment_type not in skip]


def resolve_segment_processing(
    config: Mapping[str, Any] | None,
) -> dict[SegmentType, SegmentOptions]:
    """Resolve a ``segment_processing`` object into options for every segment type.

    Keys may be snake_case (``section_header``) or the type names (``SectionHeader``);
    unknown keys, at both levels, are ignored. Both chunkr forms are accepted: the
    legacy ``html``/``markdown``/``embed_sources`` fields and the newer
    ``format``/``strategy``.

    Args:
        config: The request's ``segment_processing`` (dict or pydantic model), or None.

    Returns:
        Options for each of the twelve segment types.

    Raises:
        BadRequest: A known field has a value outside the contract's enum.
    """
    config = _as_mapping(config)
    by_key = {_type_key(k): v for k, v in config.items() if _type_key(k) is not None}
    resolved = {}
    for seg_type in SegmentType:
        raw = by_key.get(seg_type)
        resolved[seg_type] = _options(seg_type, _as_mapping(raw))
    return resolved


def apply_segment_processing(
    segments: Sequence[Segment], config: Mapping[str, Any] | None
) -> list[SegmentPlan]:
    """Decide per segment what to crop, whether an LLM is wanted, and what to embed.

    Args:
        segments: Segments in reading order.
        config: The request's ``segment_processing``.

    Returns:
        One plan per segment, same order. ``Ignore`` keeps the segment but drops its
        HTML/Markdown from the embed text.
    """
    options = resolve_segment_processing(config)
    plans = []
    for seg in segments:
        opts = options[seg.segment_type]
        needs_llm = opts.strategy == "LLM" or opts.html_llm or opts.markdown_llm
        crop_it = opts.crop_image == "All" or needs_llm or seg.segment_type == SegmentType.PICTURE
        plans.append(SegmentPlan(seg, opts, crop_it, needs_llm, _embed_text(seg, opts)))
    return plans


# ---------------------------------------------------------------------------
# Lines: the unit every rule works on
# ---------------------------------------------------------------------------


@dataclass
class _Line:
    bbox: BBox
    text: str
    # Font size (text layer) or median word height (OCR): only ever compared, as a
    # ratio, with sizes from the same source.
    size: float
    bold: bool = False
    block: Hashable = None
    pieces: list[tuple[BBox, str]] = field(default_factory=list)  # spans or words
    words: list[Word] = field(default_factory=list)  # OCR words, when the line came from OCR


def _page_lines(page: Page) -> tuple[list[_Line], bool]:
    """The page's lines and whether they came from the text layer."""
    if page.spans and (page.has_text_layer or not page.words):
        return _lines_from_spans(page.spans), True
    return _lines_from_words(page.words), False


def _lines_from_spans(spans: Sequence[TextSpan]) -> list[_Line]:
    groups: dict[tuple[int, int], list[TextSpan]] = {}
    for span in spans:
        if span.text.strip():
            groups.setdefault((span.block, span.line), []).append(span)
    lines = []
    for (block, _), members in groups.items():
        members.sort(key=lambda s: s.bbox.left)
        text = members[0].text
        for prev, span in itertools.pairwise(members):
            gap = span.bbox.left - prev.bbox.right
            # Spans split at font changes can cut a word in two: only a real gap (a space
            # is about a quarter of the line height) separates words. Box heights, not
            # font sizes, so the rule holds whatever unit the sizes are in.
            joined = gap <= 0.12 * max(span.bbox.height, prev.bbox.height)
            if joined and not text.endswith(" ") and not span.text.startswith(" "):
                text += span.text
            else:
                text += " " + span.text
        chars = Counter[float]()
        bold = 0
        for span in members:
            n = len(span.text.strip())
            chars[round(span.font_size * 2) / 2] += n
            bold += n if span.bold else 0
        total = sum(chars.values())
        lines.append(
            _Line(
                bbox=_union(s.bbox for s in members),
                text=" ".join(text.split()),
                size=chars.most_common(1)[0][0],
                bold=bold * 2 >= total,
                block=("pdf", block),
                pieces=[(s.bbox, s.text.strip()) for s in members],
            )
        )
    return lines


def _lines_from_words(words: Sequence[Word]) -> list[_Line]:
    """Group OCR words into lines: same row, and no column-sized gap between them."""
    rows: list[list[Word]] = []
    for word in sorted((w for w in words if w.text.strip()), key=lambda w: _cy(w.bbox)):
        for row in reversed(rows[-8:]):
            ref = row[0].bbox
            if abs(_cy(word.bbox) - _cy(ref)) <= 0.5 * max(ref.height, word.bbox.height, 1.0):
                row.append(word)
                break
        else:
            rows.append([word])
    lines = []
    for row in rows:
        row.sort(key=lambda w: w.bbox.left)
        height = float(np.median([w.bbox.height for w in row]))
        current = [row[0]]
        for word in row[1:]:
            if word.bbox.left - current[-1].bbox.right > 1.2 * max(height, 1.0):
                lines.append(_word_line(current))
                current = []
            current.append(word)
        lines.append(_word_line(current))
    lines.sort(key=lambda line: (line.bbox.top, line.bbox.left))
    return lines


def _word_line(words: list[Word]) -> _Line:
    return _Line(
        bbox=_union(w.bbox for w in words),
        text=" ".join(w.text.strip() for w in words),
        size=float(np.median([w.bbox.height for w in words])),
        pieces=[(w.bbox, w.text.strip()) for w in words],
        words=list(words),
    )


# ---------------------------------------------------------------------------
# LayoutAnalysis: drafts of segments
# ---------------------------------------------------------------------------


@dataclass
class _Draft:
    seg_type: SegmentType
    bbox: BBox
    confidence: float
    lines: list[_Line] = field(default_factory=list)
    rows: list[list[str]] | None = None  # tables
    extra_text: str = ""  # text not carried by lines (table cells)


@dataclass
class _Context:
    page: Page
    regions: list[Region]
    body: float
    title_size: float | None
    header_ratio: float  # size/body above which a line is a section header
    running: frozenset[str]
    text_layer: bool
    # Page 1's top-most detector title, used only when type sizes show no title.
    title_region: Region | None = None


def _layout_drafts(
    page: Page, detected: list[Region] | None, style: DocumentStyle | None
) -> list[_Draft]:
    lines, text_layer = _page_lines(page)
    regions = _dedupe(detected or [])
    ctx = _context(page, lines, regions, style, text_layer)

    drafts, lines = _tables(page, lines, regions)
    # Without a detector, pictures come from the rendered ink; with one, the detector is
    # trusted (ink boxes misfire where an invisible OCR layer does not match the glyphs).
    use_ink = detected is None and text_layer
    pictures, lines = _pictures(page, lines, regions, [d.bbox for d in drafts], use_ink)
    drafts += pictures

    for block_lines, hint in _blocks(lines, ctx):
        drafts += _classify_block(block_lines, hint, ctx)
    return _join_wrapped_items(drafts)


def _context(
    page: Page,
    lines: list[_Line],
    regions: list[Region],
    style: DocumentStyle | None,
    text_layer: bool,
) -> _Context:
    page_body = _weighted_median([(line.size, len(line.text)) for line in lines]) or 1.0
    # OCR heights jitter with ascenders and descenders: demand a bigger jump for headings.
    header_ratio, title_ratio = (1.15, 1.3) if text_layer else (1.3, 1.5)
    running = style.running if style is not None else frozenset()
    if text_layer and style is not None and style.body_size:
        body, title = style.body_size, style.title_size
    else:
        body = page_body
        title = (
            _title_size(lines, body, page.height, title_ratio, running)
            if page.number == 1
            else None
        )
    title_region = None
    if page.number == 1 and title is None:
        titles = [r for r in regions if r.segment_type == SegmentType.TITLE]
        title_region = min(titles, key=lambda r: r.bbox.top, default=None)
    return _Context(page, regions, body, title, header_ratio, running, text_layer, title_region)


def _title_size(
    lines: list[_Line], body: float, height: int, ratio: float, running: frozenset[str]
) -> float | None:
    # Running headers/footers never make the title; a title near the top edge still does.
    sizes = [
        line.size
        for line in lines
        if _normalise(line.text) not in running and not _PAGE_NUMBER_RE.match(_normalise(line.text))
    ]
    if not sizes or max(sizes) < ratio * body:
        return None
    return max(sizes)


def _tables(
    page: Page, lines: list[_Line], regions: list[Region]
) -> tuple[list[_Draft], list[_Line]]:
    """Tables from the PDF's table finder, then detector tables it did not find."""
    drafts: list[_Draft] = []
    for table in page.tables:
        inside, lines = _take(lines, table.bbox)
        rows = [[" ".join(cell.split()) for cell in row] for row in table.rows]
        drafts.append(_Draft(SegmentType.TABLE, table.bbox, 1.0, inside, rows))
        leftover = _leftover_words(inside, rows)
        if leftover:
            # Text the table finder left out of its cells still belongs to the page.
            drafts.append(_Draft(SegmentType.TEXT, table.bbox, 1.0, extra_text=leftover))
    for region in regions:
        if region.segment_type != SegmentType.TABLE:
            continue
        if any(_same_area(region.bbox, d.bbox) for d in drafts):
            continue
        inside, rest = _take(lines, region.bbox)
        rows = _grid([piece for line in inside for piece in line.pieces])
        if len(rows) < 2 or max(len(r) for r in rows) < 2:
            continue  # not tabular after all: leave the lines to the text rules
        lines = rest
        bbox = _union([region.bbox, *(line.bbox for line in inside)])
        drafts.append(_Draft(SegmentType.TABLE, bbox, region.confidence, inside, rows))
    return drafts, lines


def _pictures(
    page: Page, lines: list[_Line], regions: list[Region], taken: list[BBox], use_ink: bool
) -> tuple[list[_Draft], list[_Line]]:
    """Detector pictures, or (``use_ink``) large non-text ink areas of the rendered page."""
    boxes: list[tuple[BBox, float, float]] = [
        (r.bbox, r.confidence, 0.4)
        for r in regions
        if r.segment_type == SegmentType.PICTURE and not any(_same_area(r.bbox, t) for t in taken)
    ]
    if use_ink:
        known = [b for b, _, _ in boxes] + taken
        for box in _ink_boxes(page, lines, taken):
            if not any(box.intersection_area(k) > 0.3 * min(box.area, k.area) for k in known):
                boxes.append((box, 0.5, 0.15))
    drafts = []
    for box, confidence, max_text in boxes:
        inside = [
            line
            for line in lines
            if _centre_in(line.bbox, box) and not _CAPTION_RE.match(line.text)
        ]
        # A "picture" that is mostly text (a detector mistake, a shaded text box, a
        # full-page scan behind an OCR layer) stays text.
        if sum(line.bbox.area for line in inside) > max_text * max(box.area, 1.0):
            continue
        lines = [line for line in lines if not any(line is i for i in inside)]
        drafts.append(_Draft(SegmentType.PICTURE, box, confidence, inside))
    return drafts, lines


def _ink_boxes(page: Page, lines: list[_Line], taken: list[BBox], cell: int = 8) -> list[BBox]:
    """Boxes of connected non-white areas that are not text or tables (vector or raster art)."""
    image = page.image
    if image.ndim != 3 or min(page.width, page.height) < 4 * cell:
        return []
    # Channel-wise minimum without a strided reduction (10x faster on a page image).
    ink = np.minimum(np.minimum(image[..., 0], image[..., 1]), image[..., 2]) < 225
    for box in [line.bbox for line in lines] + taken:
        y0, y1 = max(int(box.top) - 2, 0), int(box.bottom) + 3
        x0, x1 = max(int(box.left) - 2, 0), int(box.right) + 3
        ink[y0:y1, x0:x1] = False
    gh, gw = page.height // cell, page.width // cell
    grid = ink[: gh * cell, : gw * cell].reshape(gh, cell, gw, cell).mean(axis=(1, 3)) > 0.02
    min_w, min_h = max(4, gw // 25), max(4, gh // 30)
    boxes = []
    for y0, x0, y1, x1, filled in _components(grid):
        w, h = x1 - x0, y1 - y0
        # Page-sized ink is a background (a scan under an OCR layer), not a figure.
        if w >= min_w and h >= min_h and filled >= 0.05 * w * h and w * h <= 0.5 * gw * gh:
            boxes.append(BBox(x0 * cell, y0 * cell, w * cell, h * cell))
    return boxes


def _components(grid: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """8-connected components of a boolean grid, one cell of slack: (y0, x0, y1, x1, cells)."""
    seen = np.zeros_like(grid)
    h, w = grid.shape
    out = []
    for y, x in zip(*np.nonzero(grid), strict=True):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue = deque([(int(y), int(x))])
        y0, x0, y1, x1, count = int(y), int(x), int(y) + 1, int(x) + 1, 0
        while queue:
            cy, cx = queue.popleft()
            count += 1
            y0, x0, y1, x1 = min(y0, cy), min(x0, cx), max(y1, cy + 1), max(x1, cx + 1)
            for ny in range(max(cy - 2, 0), min(cy + 3, h)):
                for nx in range(max(cx - 2, 0), min(cx + 3, w)):
                    if grid[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        out.append((y0, x0, y1, x1, count))
    return out


def _blocks(lines: list[_Line], ctx: _Context) -> list[tuple[list[_Line], Region | None]]:
    """Group lines into blocks, each with the detector region that best explains it."""
    text_regions = [
        r for r in ctx.regions if r.segment_type not in (SegmentType.TABLE, SegmentType.PICTURE)
    ]
    if ctx.text_layer:
        grouped: dict[Hashable, list[_Line]] = {}
        for line in lines:
            grouped.setdefault(line.block, []).append(line)
        return [(members, _vote(members, text_regions)) for members in grouped.values()]
    # OCR: a detector region is the block; lines outside every region are grouped by proximity.
    by_region: dict[int, list[_Line]] = {}
    loose: list[_Line] = []
    for line in lines:
        best = max(
            range(len(text_regions)),
            key=lambda i: _coverage(line.bbox, text_regions[i].bbox),
            default=None,
        )
        if best is not None and _coverage(line.bbox, text_regions[best].bbox) >= 0.5:
            by_region.setdefault(best, []).append(line)
        else:
            loose.append(line)
    blocks: list[tuple[list[_Line], Region | None]] = [
        (members, text_regions[i]) for i, members in by_region.items()
    ]
    return blocks + [(members, None) for members in _proximity_blocks(loose)]


def _proximity_blocks(lines: list[_Line]) -> list[list[_Line]]:
    blocks: list[list[_Line]] = []
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


def _vote(lines: list[_Line], regions: list[Region]) -> Region | None:
    """The region type covering most of the block's text, weighted by confidence."""
    area = sum(line.bbox.area for line in lines) or 1.0
    best: tuple[float, Region | None] = (0.0, None)
    for region in regions:
        covered = sum(line.bbox.intersection_area(region.bbox) for line in lines)
        if covered >= 0.5 * area and covered * region.confidence > best[0]:
            best = (covered * region.confidence, region)
    return best[1]


def _classify_block(lines: list[_Line], hint: Region | None, ctx: _Context) -> list[_Draft]:
    lines = (
        sorted(lines, key=lambda ln: (ln.bbox.top, ln.bbox.left)) if not ctx.text_layer else lines
    )
    plain_type, plain_conf = _block_type(lines, hint, ctx)
    rows = _rows(lines)
    drafts: list[_Draft] = []
    for line in lines:
        kind = _line_type(line, rows, hint, ctx)
        current = drafts[-1] if drafts else None
        if kind == SegmentType.LIST_ITEM:
            drafts.append(_Draft(kind, line.bbox, 1.0, [line]))
            continue
        if kind is None:
            if current is not None and _continues_item(current, line):
                kind = SegmentType.LIST_ITEM
            else:
                kind = plain_type
        confidence = plain_conf if kind == plain_type else 1.0
        if current is not None and current.seg_type == kind and _adjacent(current, line):
            current.lines.append(line)
            current.bbox = _union([current.bbox, line.bbox])
        else:
            drafts.append(_Draft(kind, line.bbox, confidence, [line]))
    return drafts


def _line_type(
    line: _Line, block_rows: int, hint: Region | None, ctx: _Context
) -> SegmentType | None:
    """Types a single line carries on its own (else None: the block decides)."""
    height = ctx.page.height
    if _in_margin(line.bbox, height) and _is_running(line, hint, ctx):
        top = _cy(line.bbox) < height / 2
        return SegmentType.PAGE_HEADER if top else SegmentType.PAGE_FOOTER
    words = len(line.text.split())
    # Display formulas are often set larger than the body: size alone does not make a heading.
    heading_like = not _looks_like_formula(line.text)
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
    if _BULLET_RE.match(line.text) or _ENUM_RE.match(line.text):
        return SegmentType.LIST_ITEM
    return None


def _is_running(line: _Line, hint: Region | None, ctx: _Context) -> bool:
    norm = _normalise(line.text)
    if norm in ctx.running or _PAGE_NUMBER_RE.match(norm):
        return True
    bands = (SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER)
    if hint is not None and hint.segment_type in bands:
        return True
    return any(r.segment_type in bands and _coverage(line.bbox, r.bbox) >= 0.5 for r in ctx.regions)


def _block_type(
    lines: list[_Line], hint: Region | None, ctx: _Context
) -> tuple[SegmentType, float]:
    """The type of a block's ordinary lines (those no line rule claims)."""
    text = " ".join(line.text for line in lines)
    size = _weighted_median([(line.size, len(line.text)) for line in lines]) or ctx.body
    top = min(line.bbox.top for line in lines)
    if _CAPTION_RE.match(lines[0].text):
        return SegmentType.CAPTION, 1.0
    if _rows(lines) <= 2 and _looks_like_formula(text):
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


def _join_wrapped_items(drafts: list[_Draft]) -> list[_Draft]:
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
                item.bbox = _union([item.bbox, draft.bbox])
                continue
        out.append(draft)
    return out


def _all_hang(item: _Draft, lines: list[_Line]) -> bool:
    probe = _Draft(item.seg_type, item.bbox, item.confidence, list(item.lines))
    for line in lines:
        if not _continues_item(probe, line, hanging=True):
            return False
        probe.lines.append(line)
    return True


def _rows(lines: list[_Line]) -> int:
    """Visual rows in a block (a text layer may split one row into several lines)."""
    rows = 0
    bottom = -np.inf
    for line in sorted(lines, key=lambda ln: ln.bbox.top):
        if line.bbox.top > bottom - 0.5 * line.bbox.height:
            rows += 1
        bottom = max(bottom, line.bbox.bottom)
    return rows


def _continues_item(item: _Draft, line: _Line, *, hanging: bool = False) -> bool:
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


def _adjacent(draft: _Draft, line: _Line) -> bool:
    """Lines of one block stay together unless a wide vertical gap separates them."""
    last = draft.lines[-1] if draft.lines else None
    if last is None:
        return False
    return line.bbox.top - last.bbox.bottom < 1.5 * max(last.bbox.height, line.bbox.height, 1.0)


def _looks_like_formula(text: str) -> bool:
    """A short line built from operators and symbols, with (almost) no prose words."""
    text = text.strip()
    if not text or len(text) > 80 or not any(c in _MATH for c in text):
        return False
    words = text.split()
    prose = [w for w in _WORDY_RE.findall(text) if w.lower() not in _MATH_WORDS]
    return len(prose) <= 0.2 * len(words)


# ---------------------------------------------------------------------------
# Reading order
# ---------------------------------------------------------------------------


def _order(drafts: list[_Draft], page_width: int) -> list[_Draft]:
    """Headers, then the body by recursive XY-cut (columns first), then footers."""

    def key(d: _Draft) -> tuple[float, float]:
        return d.bbox.top, d.bbox.left

    headers = sorted((d for d in drafts if d.seg_type == SegmentType.PAGE_HEADER), key=key)
    footers = sorted((d for d in drafts if d.seg_type == SegmentType.PAGE_FOOTER), key=key)
    body = [
        d for d in drafts if d.seg_type not in (SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER)
    ]
    return headers + _xy_cut(body, max(4.0, 0.01 * page_width)) + footers


def _xy_cut(items: list[_Draft], min_gutter: float) -> list[_Draft]:
    if len(items) <= 1:
        return items
    columns = _split(items, lambda b: (b.left, b.right), min_gutter)
    side_by_side = len(columns) > 1 and all(
        _span(a, "y")[1] > _span(b, "y")[0] and _span(b, "y")[1] > _span(a, "y")[0]
        for a, b in itertools.pairwise(columns)
    )
    if side_by_side:
        return [d for col in columns for d in _xy_cut(col, min_gutter)]
    bands = _split(items, lambda b: (b.top, b.bottom), 1.0)
    if len(bands) > 1:
        return [d for band in bands for d in _xy_cut(band, min_gutter)]
    if len(columns) > 1:
        return [d for col in columns for d in _xy_cut(col, min_gutter)]
    return sorted(items, key=lambda d: (d.bbox.top, d.bbox.left))


def _split(items: list[_Draft], extent: Any, min_gap: float) -> list[list[_Draft]]:
    """Groups separated by a gap of at least ``min_gap`` along one axis."""
    tol = 2.0  # boxes touching by a couple of pixels are still separate
    ordered = sorted(items, key=lambda d: extent(d.bbox)[0])
    groups: list[list[_Draft]] = [[ordered[0]]]
    reach = extent(ordered[0].bbox)[1] - tol
    for d in ordered[1:]:
        start, end = extent(d.bbox)
        if start + tol - reach >= min_gap:
            groups.append([d])
        else:
            groups[-1].append(d)
        reach = max(reach, end - tol)
    return groups


def _span(group: list[_Draft], axis: str) -> tuple[float, float]:
    if axis == "y":
        return min(d.bbox.top for d in group), max(d.bbox.bottom for d in group)
    return min(d.bbox.left for d in group), max(d.bbox.right for d in group)


# ---------------------------------------------------------------------------
# Segments and rendering
# ---------------------------------------------------------------------------


def _to_segment(draft: _Draft, page: Page, segment_id: str) -> Segment:
    if draft.rows is not None:
        text = "\n".join("\t".join(row) for row in draft.rows)
    else:
        text = " ".join(line.text for line in draft.lines)
    if draft.extra_text:
        text = f"{text} {draft.extra_text}".strip()
    ocr = [w for line in draft.lines for w in line.words] or _words_in(page.words, draft.bbox)
    rendered_html, markdown = _render(draft.seg_type, text, draft.rows, None)
    return Segment(
        segment_id=segment_id,
        segment_type=draft.seg_type,
        bbox=draft.bbox,
        page_number=page.number,
        page_width=float(page.width),
        page_height=float(page.height),
        confidence=round(float(draft.confidence), 4),
        text=text,
        content=text,
        html=rendered_html,
        markdown=markdown,
        ocr=ocr,
    )


def _page_segment(page: Page, segments: list[Segment], segment_id: str) -> Segment:
    text = "\n".join(s.text for s in segments if s.text)
    return Segment(
        segment_id=segment_id,
        segment_type=SegmentType.PAGE,
        bbox=BBox(0.0, 0.0, float(page.width), float(page.height)),
        page_number=page.number,
        page_width=float(page.width),
        page_height=float(page.height),
        confidence=1.0,
        text=text,
        content=text,
        html="".join(s.html for s in segments),
        markdown="\n\n".join(s.markdown for s in segments if s.markdown),
        ocr=list(page.words),
    )


def _render(
    seg_type: SegmentType, text: str, rows: list[list[str]] | None, image: str | None
) -> tuple[str, str]:
    """HTML and Markdown for one segment, by its type."""
    esc = html.escape(text)
    if seg_type == SegmentType.TITLE:
        return f"<h1>{esc}</h1>", f"# {text}"
    if seg_type == SegmentType.SECTION_HEADER:
        return f"<h2>{esc}</h2>", f"## {text}"
    if seg_type == SegmentType.LIST_ITEM:
        item = _BULLET_RE.sub("", text, count=1)
        # "1. x" under "- " would become a nested ordered list: escape the enumerator.
        md_item = re.sub(r"^(\(?\w{1,3})([.)])", r"\1\\\2", item) if _ENUM_RE.match(item) else item
        return f"<ul><li>{html.escape(item)}</li></ul>", f"- {md_item}"
    if seg_type == SegmentType.TABLE and rows is not None:
        return _table_html(rows), _table_markdown(rows)
    if seg_type == SegmentType.FORMULA:
        fence = "``" if "`" in text else "`"
        pad = " " if "`" in text else ""
        return f'<span class="formula">{esc}</span>', f"{fence}{pad}{text}{pad}{fence}"
    if seg_type == SegmentType.PICTURE:
        alt = html.escape(text, quote=True)
        if image:
            return (
                f'<img src="{html.escape(image, quote=True)}" alt="{alt}" />',
                f"![{text}]({image})",
            )
        return f'<img alt="{alt}" />', f"![{text}]()"
    return f"<p>{esc}</p>", text


def _table_html(rows: list[list[str]]) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table>{body}</table>"


def _table_markdown(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    width = max(len(row) for row in rows)

    def line(cells: list[str]) -> str:
        cells = [c.replace("|", "\\|") for c in cells] + [""] * (width - len(cells))
        return "| " + " | ".join(cells) + " |"

    return "\n".join([line(rows[0]), line(["---"] * width), *(line(r) for r in rows[1:])])


# ---------------------------------------------------------------------------
# segment_processing
# ---------------------------------------------------------------------------

_EMBED_SOURCES = {"content": "Content", "html": "HTML", "markdown": "Markdown", "llm": "LLM"}


def _options(seg_type: SegmentType, raw: Mapping[str, Any]) -> SegmentOptions:
    html_strategy = _enum(raw, "html", ("Auto", "LLM", "Ignore"))
    md_strategy = _enum(raw, "markdown", ("Auto", "LLM", "Ignore"))
    strategy = _enum(raw, "strategy", ("Auto", "LLM", "Ignore"))
    fmt = _enum(raw, "format", ("Html", "Markdown"))
    crop_image = _enum(raw, "crop_image", ("All", "Auto"))
    if crop_image is None:
        crop_image = "All" if seg_type == SegmentType.PICTURE else "Auto"
    if strategy is None:
        legacy = (html_strategy, md_strategy)
        strategy = "Ignore" if "Ignore" in legacy else ("LLM" if "LLM" in legacy else "Auto")
    if fmt is None:
        fmt = "Html" if html_strategy is not None and md_strategy is None else "Markdown"
    sources = raw.get("embed_sources")
    if sources is None:
        embed: tuple[str, ...] = ("HTML",) if fmt == "Html" else ("Markdown",)
    else:
        if isinstance(sources, str) or not isinstance(sources, Iterable):
            raise BadRequest(f"segment_processing.embed_sources must be a list, got {sources!r}")
        embed = tuple(_embed_source(s) for s in sources)
    # Ignore (from strategy or a legacy html/markdown field) drops the rendered forms only.
    dropped = set()
    if strategy == "Ignore" or html_strategy == "Ignore":
        dropped.add("HTML")
    if strategy == "Ignore" or md_strategy == "Ignore":
        dropped.add("Markdown")
    llm = raw.get("llm")
    return SegmentOptions(
        format=fmt,  # type: ignore[arg-type]
        strategy=strategy,  # type: ignore[arg-type]
        crop_image=crop_image,  # type: ignore[arg-type]
        embed_sources=tuple(s for s in embed if s not in dropped),
        llm=llm if isinstance(llm, str) else None,
        html_llm=html_strategy == "LLM",
        markdown_llm=md_strategy == "LLM",
    )


def _embed_source(value: Any) -> str:
    name = _EMBED_SOURCES.get(str(value).lower())
    if name is None:
        raise BadRequest(
            f"unknown embed source {value!r}: one of {', '.join(_EMBED_SOURCES.values())}"
        )
    return name


def _enum(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    value = getattr(value, "value", value)  # enums from pydantic models
    for name in allowed:
        if str(value).lower() == name.lower():
            return name
    raise BadRequest(f"segment_processing {key}={value!r}: one of {', '.join(allowed)}")


def _embed_text(segment: Segment, options: SegmentOptions) -> str:
    fields = {
        "Content": segment.content,
        "HTML": segment.html,
        "Markdown": segment.markdown,
        "LLM": segment.llm or "",
    }
    return "\n".join(fields[s] for s in options.embed_sources if fields[s])


def _type_key(key: str) -> SegmentType | None:
    compact = str(key).replace("_", "").lower()
    for seg_type in SegmentType:
        if seg_type.value.lower() == compact:
            return seg_type
    return None


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        dumped: Mapping[str, Any] = value.model_dump(exclude_none=True)
        return dumped
    if isinstance(value, Mapping):
        return value
    raise BadRequest(f"segment_processing entries must be objects, got {type(value).__name__}")


# ---------------------------------------------------------------------------
# Geometry and text helpers
# ---------------------------------------------------------------------------


def _union(boxes: Iterable[BBox]) -> BBox:
    items = list(boxes)
    return BBox.from_corners(
        min(b.left for b in items),
        min(b.top for b in items),
        max(b.right for b in items),
        max(b.bottom for b in items),
    )


def _cy(box: BBox) -> float:
    return box.top + box.height / 2


def _centre_in(inner: BBox, outer: BBox, pad: float = 2.0) -> bool:
    cx, cy = inner.left + inner.width / 2, _cy(inner)
    return (
        outer.left - pad <= cx <= outer.right + pad and outer.top - pad <= cy <= outer.bottom + pad
    )


def _coverage(inner: BBox, outer: BBox) -> float:
    """The fraction of ``inner``'s area inside ``outer``."""
    return inner.intersection_area(outer) / max(inner.area, 1e-6)


def _same_area(a: BBox, b: BBox) -> bool:
    """Two boxes describe the same thing: most of the smaller one lies in the larger."""
    return a.intersection_area(b) > 0.5 * max(min(a.area, b.area), 1e-6)


def _iou(a: BBox, b: BBox) -> float:
    inter = a.intersection_area(b)
    return inter / max(a.area + b.area - inter, 1e-6)


def _dedupe(regions: list[Region]) -> list[Region]:
    """Cross-class NMS: CDLA often labels one box twice (text and caption, say)."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: -r.confidence):
        if all(_iou(region.bbox, k.bbox) <= 0.7 for k in kept):
            kept.append(region)
    return kept


def _take(lines: list[_Line], box: BBox) -> tuple[list[_Line], list[_Line]]:
    inside = [line for line in lines if _centre_in(line.bbox, box)]
    rest = [line for line in lines if not _centre_in(line.bbox, box)]
    return inside, rest


def _leftover_words(lines: list[_Line], rows: list[list[str]]) -> str:
    have = Counter(w for row in rows for cell in row for w in cell.split())
    missing = Counter(w for line in lines for w in line.text.split()) - have
    return " ".join(missing.elements())


def _grid(pieces: list[tuple[BBox, str]]) -> list[list[str]]:
    """Rows and columns from positioned text: rows by vertical overlap, columns by x-gaps."""
    pieces = [p for p in pieces if p[1]]
    if not pieces:
        return []
    rows: list[list[tuple[BBox, str]]] = []
    for piece in sorted(pieces, key=lambda p: _cy(p[0])):
        if rows and abs(_cy(piece[0]) - _cy(rows[-1][0][0])) <= 0.5 * rows[-1][0][0].height:
            rows[-1].append(piece)
        else:
            rows.append([piece])
    spans = sorted((b.left, b.right) for b, _ in pieces)
    columns = [list(spans[0])]
    for left, right in spans[1:]:
        if left <= columns[-1][1] + 2:
            columns[-1][1] = max(columns[-1][1], right)
        else:
            columns.append([left, right])
    table = []
    for row in rows:
        cells = [""] * len(columns)
        for box, text in sorted(row, key=lambda p: p[0].left):
            cx = box.left + box.width / 2
            col = min(range(len(columns)), key=lambda i: _distance(cx, columns[i]))
            cells[col] = f"{cells[col]} {text}".strip()
        table.append(cells)
    return table


def _distance(x: float, interval: list[float]) -> float:
    return (
        0.0 if interval[0] <= x <= interval[1] else min(abs(x - interval[0]), abs(x - interval[1]))
    )


def _words_in(words: Sequence[Word], box: BBox) -> list[Word]:
    return [w for w in words if _centre_in(w.bbox, box)]


def _in_margin(box: BBox, height: int) -> bool:
    cy = _cy(box)
    return cy < _MARGIN * height or cy > (1 - _MARGIN) * height


def _normalise(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _weighted_median(values: Sequence[tuple[float, int]]) -> float | None:
    items = sorted((v, w) for v, w in values if w > 0)
    total = sum(w for _, w in items)
    if not total:
        return None
    acc = 0
    for value, weight in items:
        acc += weight
        if acc * 2 >= total:
            return float(value)
    return float(items[-1][0])

"""What a segment shows: its text, HTML and Markdown by type, and its cropped image."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from visionserve.models.documents.segments.draft import Draft
from visionserve.models.documents.segments.geometry import centre_in
from visionserve.models.documents.segments.patterns import BULLET_RE, ENUM_RE
from visionserve.models.documents.types import BBox, Page, Segment, SegmentType, Word


def to_segment(draft: Draft, page: Page, segment_id: str) -> Segment:
    """The finished segment: text, HTML and Markdown rendered, OCR words attached."""
    if draft.rows is not None:
        text = "\n".join("\t".join(row) for row in draft.rows)
    else:
        text = " ".join(line.text for line in draft.lines)
    if draft.extra_text:
        text = f"{text} {draft.extra_text}".strip()
    if draft.lines and all(line.words for line in draft.lines):
        ocr = [w for line in draft.lines for w in line.words]
    else:  # text-layer lines (alone or with OCR lines of a picture): the page's words in the box
        ocr = _words_in(page.words, draft.bbox)
    rendered_html, markdown = render(draft.seg_type, text, draft.rows, None)
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


def page_segment(page: Page, segments: list[Segment], segment_id: str) -> Segment:
    """The ``Page`` strategy's one segment: the page's segments joined."""
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


def render(
    seg_type: SegmentType, text: str, rows: list[list[str]] | None, image: str | None
) -> tuple[str, str]:
    """HTML and Markdown for one segment, by its type."""
    esc = html.escape(text)
    if seg_type == SegmentType.TITLE:
        return f"<h1>{esc}</h1>", f"# {text}"
    if seg_type == SegmentType.SECTION_HEADER:
        return f"<h2>{esc}</h2>", f"## {text}"
    if seg_type == SegmentType.LIST_ITEM:
        item = BULLET_RE.sub("", text, count=1)
        # "1. x" under "- " would become a nested ordered list: escape the enumerator.
        md_item = re.sub(r"^(\(?\w{1,3})([.)])", r"\1\\\2", item) if ENUM_RE.match(item) else item
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
        segment.html, segment.markdown = render(segment.segment_type, segment.text, None, url)


def _words_in(words: Sequence[Word], box: BBox) -> list[Word]:
    return [w for w in words if centre_in(w.bbox, box)]

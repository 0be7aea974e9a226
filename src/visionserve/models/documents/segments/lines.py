"""Lines, the unit every segment rule works on: text-layer spans or OCR words grouped by row."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from visionserve.models.documents.segments.geometry import mid_y, union
from visionserve.models.documents.types import BBox, Page, TextSpan, Word

# OCR words below this confidence inside figures are mostly misreadings of the drawing
# (the same floor ``ocr_page`` applies to the words Auto adds to a text layer).
_MIN_IMAGE_WORD_CONFIDENCE = 0.5


@dataclass
class Line:
    """One visual line of text with its box, dominant size and where it came from."""

    bbox: BBox
    text: str
    # Font size (text layer) or median word height (OCR): only ever compared, as a
    # ratio, with sizes from the same source.
    size: float
    bold: bool = False
    block: Hashable = None
    pieces: list[tuple[BBox, str]] = field(default_factory=list)  # spans or words
    words: list[Word] = field(default_factory=list)  # OCR words, when the line came from OCR


def page_lines(page: Page) -> tuple[list[Line], bool]:
    """The page's lines and whether they came from the text layer."""
    if page.spans and (page.has_text_layer or not page.words):
        return _lines_from_spans(page.spans), True
    return _lines_from_words(page.words), False


def image_text_lines(page: Page) -> list[Line]:
    """Lines of the OCR words a page's text layer lacks: text inside pictures.

    Logos, pasted screenshots and scanned figures carry text the PDF's layer does not
    have; OCR (``Auto`` where such ink exists, ``All`` everywhere) reads it into
    ``page.words``. Words the layer already covers, faint guesses and punctuation
    specks from figure edges are left out.

    Args:
        page: A page whose lines come from its text layer (see :func:`page_lines`).

    Returns:
        The extra words grouped into lines (``Line.words`` set), top to bottom.
    """
    words = [
        w
        for w in page.words
        if w.confidence >= _MIN_IMAGE_WORD_CONFIDENCE and any(c.isalnum() for c in w.text)
    ]
    if not words or not page.spans:
        return _lines_from_words(words)
    # OCR boxes sit a few pixels off the layer's glyph boxes (a one-letter word by half
    # its width): a span counts with a margin of half its height around it.
    spans = np.array(
        [
            (b.left - pad, b.top - pad, b.right + pad, b.bottom + pad)
            for b, pad in ((s.bbox, 0.5 * s.bbox.height) for s in page.spans)
        ]
    )
    extra = []
    for word in words:
        box = word.bbox
        w = np.clip(np.minimum(spans[:, 2], box.right) - np.maximum(spans[:, 0], box.left), 0, None)
        h = np.clip(np.minimum(spans[:, 3], box.bottom) - np.maximum(spans[:, 1], box.top), 0, None)
        if float((w * h).sum()) < 0.5 * max(box.area, 1e-6):
            extra.append(word)
    return _lines_from_words(extra)


def _lines_from_spans(spans: Sequence[TextSpan]) -> list[Line]:
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
            Line(
                bbox=union(s.bbox for s in members),
                text=" ".join(text.split()),
                size=chars.most_common(1)[0][0],
                bold=bold * 2 >= total,
                block=("pdf", block),
                pieces=[(s.bbox, s.text.strip()) for s in members],
            )
        )
    return lines


def _lines_from_words(words: Sequence[Word]) -> list[Line]:
    """Group OCR words into lines: same row, and no column-sized gap between them."""
    rows: list[list[Word]] = []
    for word in sorted((w for w in words if w.text.strip()), key=lambda w: mid_y(w.bbox)):
        for row in reversed(rows[-8:]):
            ref = row[0].bbox
            if abs(mid_y(word.bbox) - mid_y(ref)) <= 0.5 * max(ref.height, word.bbox.height, 1.0):
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


def _word_line(words: list[Word]) -> Line:
    return Line(
        bbox=union(w.bbox for w in words),
        text=" ".join(w.text.strip() for w in words),
        size=float(np.median([w.bbox.height for w in words])),
        pieces=[(w.bbox, w.text.strip()) for w in words],
        words=list(words),
    )

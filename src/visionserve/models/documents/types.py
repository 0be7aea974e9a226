"""The data that flows through the document graph, in the chunkr contract's terms.

Coordinates are pixels of the rendered page image (``Page.dpi``), origin top-left,
as chunkr reports them; ``page_width``/``page_height`` are that image's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class SegmentType(StrEnum):
    TITLE = "Title"
    SECTION_HEADER = "SectionHeader"
    TEXT = "Text"
    LIST_ITEM = "ListItem"
    TABLE = "Table"
    PICTURE = "Picture"
    CAPTION = "Caption"
    FORMULA = "Formula"
    FOOTNOTE = "Footnote"
    PAGE_HEADER = "PageHeader"
    PAGE_FOOTER = "PageFooter"
    PAGE = "Page"


@dataclass(frozen=True)
class BBox:
    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @classmethod
    def from_corners(cls, x0: float, y0: float, x1: float, y1: float) -> BBox:
        return cls(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))

    def scaled(self, factor: float) -> BBox:
        return BBox(
            self.left * factor, self.top * factor, self.width * factor, self.height * factor
        )

    def intersection_area(self, other: BBox) -> float:
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        return max(0.0, w) * max(0.0, h)

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True)
class Word:
    """One OCR'd or text-layer word (or line, for engines that give lines)."""

    bbox: BBox
    text: str
    confidence: float = 1.0


@dataclass
class TextSpan:
    """A run of text from the PDF's own text layer, with the font facts layout needs."""

    bbox: BBox
    text: str
    font_size: float
    bold: bool = False
    block: int = 0  # pymupdf block number
    line: int = 0


@dataclass
class TableCells:
    """A table found by the PDF's table finder or by layout: rows of cell texts."""

    bbox: BBox
    rows: list[list[str]]


@dataclass
class Page:
    """A rendered page and what the source file itself knows about it."""

    number: int  # 1-based
    image: np.ndarray  # HxWx3 uint8 RGB at ``dpi``
    dpi: int
    # The PDF's text layer in page-image pixels (None for images / scanned pages).
    spans: list[TextSpan] | None = None
    tables: list[TableCells] = field(default_factory=list)
    # Filled by OCR (when the strategy asks for it) and kept for the `ocr` field.
    words: list[Word] = field(default_factory=list)
    error: str | None = None  # a page that failed (kept under error_handling=Continue)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def has_text_layer(self) -> bool:
        return bool(self.spans) and sum(len(s.text.strip()) for s in self.spans or []) >= 20


@dataclass(frozen=True)
class Region:
    """A layout region: its type, box and the detector's confidence."""

    segment_type: SegmentType
    bbox: BBox
    confidence: float


@dataclass
class Segment:
    """One segment of the contract's output."""

    segment_id: str
    segment_type: SegmentType
    bbox: BBox
    page_number: int
    page_width: float
    page_height: float
    confidence: float | None = None
    text: str = ""
    content: str = ""
    html: str = ""
    markdown: str = ""
    image: str | None = None  # a URL (or base64 data URI) of the cropped region
    llm: str | None = None
    ocr: list[Word] = field(default_factory=list)


@dataclass
class Chunk:
    chunk_id: str
    chunk_length: int
    segments: list[Segment]
    embed: str | None = None  # the text to embed (the contract's field)
    embedding: list[float] | None = None  # its all-MiniLM-L6-v2 vector, when asked for

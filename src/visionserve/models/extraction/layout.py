"""Words with boxes → lines → cells: the geometry the extractor reasons on.

OCR engines differ in what a "word" is (tesseract: a word; RapidOCR: a whole line;
a PDF text layer: a span split at spaces). Everything is first split into tokens
at spaces, with boxes shared out by character count, then grouped into lines
(vertical overlap) and each line into cells at gaps wider than about one line
height: a label and its value in another column, or table columns, become
separate cells, while the words of one phrase stay together.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from visionserve.models.documents.types import Word


@dataclass
class Token:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    confidence: float
    page: int

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass
class Cell:
    """A run of tokens on one line with no wide gap inside."""

    tokens: list[Token]
    page: int
    line: int  # index of its line in the page's lines
    index: int = 0  # position in its line

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.tokens)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (
            min(t.x0 for t in self.tokens),
            min(t.y0 for t in self.tokens),
            max(t.x1 for t in self.tokens),
            max(t.y1 for t in self.tokens),
        )

    @property
    def x0(self) -> float:
        return self.bbox[0]

    @property
    def x1(self) -> float:
        return self.bbox[2]

    @property
    def y0(self) -> float:
        return self.bbox[1]

    @property
    def y1(self) -> float:
        return self.bbox[3]

    @property
    def height(self) -> float:
        return statistics.median(t.height for t in self.tokens)

    @property
    def confidence(self) -> float:
        return min(t.confidence for t in self.tokens)

    def sub(self, start: int, end: int | None = None) -> Cell:
        """The cell of tokens ``start:end``."""
        return Cell(self.tokens[start:end], self.page, self.line, self.index)


@dataclass
class Line:
    cells: list[Cell]
    page: int
    index: int

    @property
    def tokens(self) -> list[Token]:
        return [t for c in self.cells for t in c.tokens]

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.cells)

    @property
    def y0(self) -> float:
        return min(c.y0 for c in self.cells)

    @property
    def y1(self) -> float:
        return max(c.y1 for c in self.cells)

    @property
    def height(self) -> float:
        return statistics.median(t.height for t in self.tokens)


@dataclass
class PageLayout:
    number: int
    width: float
    height: float
    lines: list[Line] = field(default_factory=list)

    @property
    def cells(self) -> list[Cell]:
        return [c for line in self.lines for c in line.cells]


_SPACE = re.compile(r"\S+")
# "1 089,10": French and Swiss amounts group thousands with a space, which splits
# them into two tokens; a 1-3 digit token right before a 3-digit group is rejoined.
_GROUP_HEAD = re.compile(r"[-−(]?[€$£]?\d{1,3}")
_GROUP_TAIL = re.compile(r"\d{3}(?:[.,]\d{1,2})?\)?[€$£]?")


def _join_thousands(row: list[Token]) -> list[Token]:
    out: list[Token] = []
    for token in row:
        prev = out[-1] if out else None
        if (
            prev is not None
            and _GROUP_HEAD.fullmatch(prev.text)
            and _GROUP_TAIL.fullmatch(token.text)
            and token.x0 - prev.x1 < 0.45 * prev.height
        ):
            out[-1] = Token(
                f"{prev.text}\u202f{token.text}",
                prev.x0,
                min(prev.y0, token.y0),
                token.x1,
                max(prev.y1, token.y1),
                min(prev.confidence, token.confidence),
                prev.page,
            )
        else:
            out.append(token)
    return out


def tokens_of(words: Sequence[Word], page: int) -> list[Token]:
    """Split words (or OCR lines) into space-separated tokens with proportional boxes."""
    tokens = []
    for word in words:
        text = word.text
        n = len(text)
        if not n or not text.strip():
            continue
        box = word.bbox
        step = box.width / n
        for match in _SPACE.finditer(text):
            tokens.append(
                Token(
                    match.group(),
                    box.left + match.start() * step,
                    box.top,
                    box.left + match.end() * step,
                    box.bottom,
                    float(word.confidence),
                    page,
                )
            )
    return tokens


def build_layout(
    words: Sequence[Word], *, page: int, width: float, height: float, gap: float = 1.5
) -> PageLayout:
    """Group a page's words into lines and cells.

    Args:
        words: The page's words or OCR lines.
        page: The page number.
        width: Page width (pixels).
        height: Page height (pixels).
        gap: Horizontal gap, in line heights, that starts a new cell (a space in a
            monospace font is close to one cap height; columns are further apart).

    Returns:
        The page's lines, top to bottom, each with its cells left to right.
    """
    tokens = sorted(tokens_of(words, page), key=lambda t: (t.cy, t.x0))
    rows: list[list[Token]] = []
    for token in tokens:
        placed = False
        for row in reversed(rows[-3:]):  # only recent rows can overlap vertically
            ref = row[0]
            overlap = min(ref.y1, token.y1) - max(ref.y0, token.y0)
            if overlap >= 0.55 * min(ref.height, token.height):
                row.append(token)
                placed = True
                break
        if not placed:
            rows.append([token])
    layout = PageLayout(page, width, height)
    for row in sorted(rows, key=lambda r: statistics.median(t.cy for t in r)):
        row.sort(key=lambda t: t.x0)
        row = _join_thousands(row)
        # OCR boxes are tight: a lower-case word is only x-height tall. The tallest
        # word is the line's size (cap height at least).
        line_height = max(t.height for t in row)
        groups: list[list[Token]] = [[row[0]]]
        for token in row[1:]:
            prev = groups[-1][-1]
            sizes = sorted((token.height, prev.height))
            # A wide gap, or a jump in text size (a sender line beside a big title).
            space = token.x0 - prev.x1
            if space > gap * line_height or (sizes[1] > 1.45 * sizes[0] and space > sizes[0]):
                groups.append([token])
            else:
                groups[-1].append(token)
        index = len(layout.lines)
        cells = [Cell(g, page, index, i) for i, g in enumerate(groups)]
        layout.lines.append(Line(cells, page, index))
    return layout

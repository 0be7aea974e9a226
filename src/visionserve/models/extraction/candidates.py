"""Values found next to labels, and label-free values found by their type.

A label is matched at the start of a cell (its first one to six tokens); the value
is the rest of the cell (``Invoice No: 123``), the next cell on the line (label and
value in two columns) or the cell below (label above value). Every candidate is
coerced to the field's type first: a label whose neighbour is not a date is not a
date field's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from visionserve.models.extraction.layout import Cell, PageLayout
from visionserve.models.extraction.vocabulary import label_score

# How much the position of a value relative to its label says.
INLINE, RIGHT, BELOW = 1.0, 0.96, 0.9
_MAX_LABEL_TOKENS = 6


@dataclass
class Candidate:
    """One possible value of a field, with where it was found and how sure we are."""

    value: Any
    cell: Cell
    score: float
    how: str  # inline | right | below | cue | detector
    label: Cell | None = None

    @property
    def page(self) -> int:
        return self.cell.page

    @property
    def bbox(self) -> list[float]:
        return [round(v, 1) for v in self.cell.bbox]

    @property
    def text(self) -> str:
        return self.cell.text


Coercer = Callable[[str], Any]


def label_at_start(cell: Cell, labels: tuple[str, ...]) -> tuple[float, int]:
    """The best label match over the cell's first tokens: (score, tokens used)."""
    best = (0.0, 0)
    tokens = cell.tokens
    text = ""
    for k in range(1, min(_MAX_LABEL_TOKENS, len(tokens)) + 1):
        text = f"{text} {tokens[k - 1].text}" if text else tokens[k - 1].text
        score = label_score(text, labels)
        if score >= best[0] and score > 0:
            best = (score, k)
        if tokens[k - 1].text.endswith(":"):
            break  # a colon ends the label
    return best


def labelled(
    layouts: list[PageLayout],
    labels: tuple[str, ...],
    coerce: Coercer,
    *,
    is_label: Callable[[Cell], bool],
    taken: Callable[[Cell, int], bool] = lambda cell, used: False,
    far: bool = False,
) -> Iterator[Candidate]:
    """Every value next to one of ``labels`` that coerces to the field's type.

    Args:
        layouts: The document's pages.
        labels: The labels the field goes by.
        coerce: Text → typed value, or None when the text is not of the field's type.
        is_label: Whether a cell is some field's label (never taken as a value).
        taken: Whether a longer label of another field starts the cell (``Total HT``
            is the subtotal's label, not the total's ``Total`` plus junk).
    """
    for layout in layouts:
        for line in layout.lines:
            for cell in line.cells:
                score, used = label_at_start(cell, labels)
                if not score or taken(cell, used):
                    continue
                label = cell.sub(0, used)
                # OCR reads table rules and underlines as "|", "__", "—": not the value.
                kept = [t for t in cell.tokens[used:] if any(ch.isalnum() for ch in t.text)]
                if kept:
                    rest = Cell(kept, cell.page, cell.line, cell.index)
                    value = coerce(rest.text)
                    if value is not None:
                        yield Candidate(value, rest, score * INLINE, "inline", label)
                        continue
                    # A label followed by words that are not its value is a weaker label.
                    score *= 0.85
                right = _right_of(layout, cell, far=far)
                if right is not None and not is_label(right):
                    value = coerce(right.text)
                    if value is not None:
                        yield Candidate(value, right, score * RIGHT, "right", label)
                        continue
                for below in _below(layout, cell):
                    if is_label(below):
                        break
                    value = coerce(below.text)
                    if value is not None:
                        yield Candidate(value, below, score * BELOW, "below", label)
                        break


def _right_of(layout: PageLayout, cell: Cell, *, far: bool) -> Cell | None:
    cells = layout.lines[cell.line].cells
    if cell.index + 1 >= len(cells):
        return None
    right = cells[cell.index + 1]
    # Text half a page away belongs to another column's label.
    if not far and right.x0 - cell.x1 > 0.45 * layout.width:
        return None
    return right


def _below(layout: PageLayout, cell: Cell) -> Iterator[Cell]:
    """Cells under a label, nearest first, within two and a half line heights."""
    height = cell.height
    for line in layout.lines[cell.line + 1 : cell.line + 3]:
        if line.y0 - cell.y1 > 2.5 * height:
            return
        overlapping = [
            c for c in line.cells if min(c.x1, cell.x1 + height) - max(c.x0, cell.x0 - height) > 0
        ]
        if overlapping:
            yield min(overlapping, key=lambda c: abs(c.x0 - cell.x0))
            return

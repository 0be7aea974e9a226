"""A segment while it is being built: its type, box, lines and (for tables) cells."""

from __future__ import annotations

from dataclasses import dataclass, field

from visionserve.models.documents.segments.lines import Line
from visionserve.models.documents.types import BBox, SegmentType


@dataclass
class Draft:
    """A segment under construction; rendering turns it into a :class:`Segment`."""

    seg_type: SegmentType
    bbox: BBox
    confidence: float
    lines: list[Line] = field(default_factory=list)
    rows: list[list[str]] | None = None  # tables
    extra_text: str = ""  # text not carried by lines (table cells)

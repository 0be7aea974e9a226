"""Document-wide style: body and title font sizes, running headers and footers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from visionserve.models.documents.segments.geometry import in_margin, weighted_median
from visionserve.models.documents.segments.lines import Line, page_lines
from visionserve.models.documents.segments.patterns import PAGE_NUMBER_RE, normalise
from visionserve.models.documents.types import Page


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


def document_style(pages: Sequence[Page]) -> DocumentStyle:
    """Measure body/title font sizes and running headers/footers across pages.

    Args:
        pages: The document's pages (page 1 decides the title size).

    Returns:
        The style to pass to :func:`build_segments` for each page.
    """
    margin_texts: Counter[str] = Counter()
    sizes: list[tuple[float, int]] = []
    first_page_lines: list[Line] = []
    for page in pages:
        lines, from_text_layer = page_lines(page)
        margin_texts.update(
            {normalise(line.text) for line in lines if in_margin(line.bbox, page.height)}
        )
        if not from_text_layer:
            continue
        sizes.extend((line.size, len(line.text)) for line in lines)
        if page.number == 1:
            first_page_lines = lines
    running = frozenset(t for t, n in margin_texts.items() if n >= 2 and t)
    body = weighted_median(sizes)
    title = None
    if body and first_page_lines:
        page1 = next(p for p in pages if p.number == 1)
        title = title_size(first_page_lines, body, page1.height, ratio=1.3, running=running)
    return DocumentStyle(body_size=body, title_size=title, running=running)


def title_size(
    lines: list[Line], body: float, height: int, ratio: float, running: frozenset[str]
) -> float | None:
    """The title's font size: the largest line on the page when it is ``ratio`` × body."""
    # Running headers/footers never make the title; a title near the top edge still does.
    sizes = [
        line.size
        for line in lines
        if normalise(line.text) not in running and not PAGE_NUMBER_RE.match(normalise(line.text))
    ]
    if not sizes or max(sizes) < ratio * body:
        return None
    return max(sizes)

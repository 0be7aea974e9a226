"""Box geometry and size statistics the segment rules share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from visionserve.models.documents.types import BBox

# A line whose centre lies in the top/bottom tenth of the page may be a running header/footer.
_MARGIN = 0.10


def union(boxes: Iterable[BBox]) -> BBox:
    """The smallest box holding all of ``boxes`` (at least one)."""
    items = list(boxes)
    return BBox.from_corners(
        min(b.left for b in items),
        min(b.top for b in items),
        max(b.right for b in items),
        max(b.bottom for b in items),
    )


def mid_y(box: BBox) -> float:
    """The box's vertical centre."""
    return box.top + box.height / 2


def centre_in(inner: BBox, outer: BBox, pad: float = 2.0) -> bool:
    """``inner``'s centre lies in ``outer`` grown by ``pad`` pixels."""
    cx, cy = inner.left + inner.width / 2, mid_y(inner)
    return (
        outer.left - pad <= cx <= outer.right + pad and outer.top - pad <= cy <= outer.bottom + pad
    )


def coverage(inner: BBox, outer: BBox) -> float:
    """The fraction of ``inner``'s area inside ``outer``."""
    return inner.intersection_area(outer) / max(inner.area, 1e-6)


def in_margin(box: BBox, height: int) -> bool:
    """The box's centre lies in the top or bottom band where running headers/footers sit."""
    cy = mid_y(box)
    return cy < _MARGIN * height or cy > (1 - _MARGIN) * height


def weighted_median(values: Sequence[tuple[float, int]]) -> float | None:
    """The median of ``(value, weight)`` pairs (sizes weighted by characters); None if empty."""
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

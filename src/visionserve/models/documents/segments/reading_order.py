"""Reading order: page headers, the body by recursive XY-cut (columns first), page footers."""

from __future__ import annotations

import itertools
from typing import Any

from visionserve.models.documents.segments.draft import Draft
from visionserve.models.documents.types import SegmentType


def order_drafts(drafts: list[Draft], page_width: int) -> list[Draft]:
    """Headers, then the body by recursive XY-cut (columns first), then footers."""

    def key(d: Draft) -> tuple[float, float]:
        return d.bbox.top, d.bbox.left

    headers = sorted((d for d in drafts if d.seg_type == SegmentType.PAGE_HEADER), key=key)
    footers = sorted((d for d in drafts if d.seg_type == SegmentType.PAGE_FOOTER), key=key)
    body = [
        d for d in drafts if d.seg_type not in (SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER)
    ]
    return headers + _xy_cut(body, max(4.0, 0.01 * page_width)) + footers


def _xy_cut(items: list[Draft], min_gutter: float) -> list[Draft]:
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


def _split(items: list[Draft], extent: Any, min_gap: float) -> list[list[Draft]]:
    """Groups separated by a gap of at least ``min_gap`` along one axis."""
    tol = 2.0  # boxes touching by a couple of pixels are still separate
    ordered = sorted(items, key=lambda d: extent(d.bbox)[0])
    groups: list[list[Draft]] = [[ordered[0]]]
    reach = extent(ordered[0].bbox)[1] - tol
    for d in ordered[1:]:
        start, end = extent(d.bbox)
        if start + tol - reach >= min_gap:
            groups.append([d])
        else:
            groups[-1].append(d)
        reach = max(reach, end - tol)
    return groups


def _span(group: list[Draft], axis: str) -> tuple[float, float]:
    if axis == "y":
        return min(d.bbox.top for d in group), max(d.bbox.bottom for d in group)
    return min(d.bbox.left for d in group), max(d.bbox.right for d in group)

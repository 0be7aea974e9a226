"""Tables and pictures: the PDF's table finder and the layout detector's regions, merged.

Each finder takes the lines it claims out of the page's lines; the rest go to
:mod:`~visionserve.models.documents.segments.classification`.
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from visionserve.models.documents.segments.draft import Draft
from visionserve.models.documents.segments.geometry import centre_in, mid_y, union
from visionserve.models.documents.segments.lines import Line
from visionserve.models.documents.segments.patterns import CAPTION_RE
from visionserve.models.documents.types import BBox, Page, Region, SegmentType


def dedupe(regions: list[Region]) -> list[Region]:
    """Cross-class NMS: CDLA often labels one box twice (text and caption, say)."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: -r.confidence):
        if all(_iou(region.bbox, k.bbox) <= 0.7 for k in kept):
            kept.append(region)
    return kept


def table_drafts(
    page: Page, lines: list[Line], regions: list[Region]
) -> tuple[list[Draft], list[Line]]:
    """Tables from the PDF's table finder, then detector tables it did not find."""
    drafts: list[Draft] = []
    for table in page.tables:
        inside, lines = _take(lines, table.bbox)
        rows = [[" ".join(cell.split()) for cell in row] for row in table.rows]
        drafts.append(Draft(SegmentType.TABLE, table.bbox, 1.0, inside, rows))
        leftover = _leftover_words(inside, rows)
        if leftover:
            # Text the table finder left out of its cells still belongs to the page.
            drafts.append(Draft(SegmentType.TEXT, table.bbox, 1.0, extra_text=leftover))
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
        bbox = union([region.bbox, *(line.bbox for line in inside)])
        drafts.append(Draft(SegmentType.TABLE, bbox, region.confidence, inside, rows))
    return drafts, lines


def picture_drafts(
    page: Page, lines: list[Line], regions: list[Region], taken: list[BBox], use_ink: bool
) -> tuple[list[Draft], list[Line]]:
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
            line for line in lines if centre_in(line.bbox, box) and not CAPTION_RE.match(line.text)
        ]
        # A "picture" that is mostly text (a detector mistake, a shaded text box, a
        # full-page scan behind an OCR layer) stays text.
        if sum(line.bbox.area for line in inside) > max_text * max(box.area, 1.0):
            continue
        lines = [line for line in lines if not any(line is i for i in inside)]
        drafts.append(Draft(SegmentType.PICTURE, box, confidence, inside))
    return drafts, lines


def attach_image_lines(pictures: list[Draft], lines: list[Line]) -> list[Line]:
    """Give each picture the OCR lines read inside it (a logo's name, a chart's labels).

    Args:
        pictures: The page's picture drafts (changed in place).
        lines: Lines OCR found outside the text layer (see ``image_text_lines``).

    Returns:
        The lines no picture holds: they still belong to the page.
    """
    rest = []
    for line in lines:
        picture = next((p for p in pictures if centre_in(line.bbox, p.bbox)), None)
        if picture is None:
            rest.append(line)
        else:
            picture.lines.append(line)
    for picture in pictures:
        if any(line.words for line in picture.lines):
            picture.lines = _by_rows(picture.lines)
    return rest


def _by_rows(lines: list[Line]) -> list[Line]:
    """Lines in reading order: rows top to bottom (by vertical overlap), each left to right."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: mid_y(ln.bbox)):
        first = rows[-1][0].bbox if rows else None
        if first is not None and abs(mid_y(line.bbox) - mid_y(first)) <= 0.5 * first.height:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.bbox.left)]


def _ink_boxes(page: Page, lines: list[Line], taken: list[BBox], cell: int = 8) -> list[BBox]:
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


def _same_area(a: BBox, b: BBox) -> bool:
    """Two boxes describe the same thing: most of the smaller one lies in the larger."""
    return a.intersection_area(b) > 0.5 * max(min(a.area, b.area), 1e-6)


def _iou(a: BBox, b: BBox) -> float:
    inter = a.intersection_area(b)
    return inter / max(a.area + b.area - inter, 1e-6)


def _take(lines: list[Line], box: BBox) -> tuple[list[Line], list[Line]]:
    inside = [line for line in lines if centre_in(line.bbox, box)]
    rest = [line for line in lines if not centre_in(line.bbox, box)]
    return inside, rest


def _leftover_words(lines: list[Line], rows: list[list[str]]) -> str:
    have = Counter(w for row in rows for cell in row for w in cell.split())
    missing = Counter(w for line in lines for w in line.text.split()) - have
    return " ".join(missing.elements())


def _grid(pieces: list[tuple[BBox, str]]) -> list[list[str]]:
    """Rows and columns from positioned text: rows by vertical overlap, columns by x-gaps."""
    pieces = [p for p in pieces if p[1]]
    if not pieces:
        return []
    rows: list[list[tuple[BBox, str]]] = []
    for piece in sorted(pieces, key=lambda p: mid_y(p[0])):
        if rows and abs(mid_y(piece[0]) - mid_y(rows[-1][0][0])) <= 0.5 * rows[-1][0][0].height:
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

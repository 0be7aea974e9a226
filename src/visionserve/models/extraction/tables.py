"""Line items: table rows (or receipt lines) as objects.

With a header row (``Description | Qty | Unit price | Amount`` in any of the six
languages), the header cells give the columns; each following line is assigned to
them by horizontal overlap, a line with an amount starts a row, a line with text
only continues the previous row's description (wrapped text), and the table ends
at a subtotal, tax or total line. Without a header (receipts), the items are the
lines that end in an amount, up to the total; ``2 x 3.50`` gives quantity and
unit price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from visionserve.models.extraction.coerce import find_amounts, parse_amount
from visionserve.models.extraction.layout import Cell, Line, PageLayout, Token
from visionserve.models.extraction.vocabulary import CONCEPTS, STOP_LABELS, label_score

ITEM_COLUMNS = ("description", "quantity", "unit_price", "amount")
_MONEY = re.compile(
    r"^[-−(]?[€$£]?\s?\d{1,3}(?:[.,' ]?\d{3})*[.,]\d{2}\)?\s?(?:[€$£]|EUR|USD|GBP)?$"
)
# "2 x 3.50": a count, a times sign, then a price (not "Water 6x1.5L").
_QTY_TIMES = re.compile(
    r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s*[x×@*]\s*(?=[€$£]?\s?\d+[.,]\d{2}(?!\d))", re.IGNORECASE
)


@dataclass
class ItemCell:
    value: float | str | None
    tokens: list[Token] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.tokens)


@dataclass
class ItemRow:
    """One line item: a value and its tokens per column, and how sure we are."""

    cells: dict[str, ItemCell]
    page: int
    score: float


def is_stop(line: Line) -> bool:
    """Whether a line is a sums line (subtotal, tax, total) that ends the items."""
    first = line.cells[0]
    for k in range(1, min(5, len(first.tokens)) + 1):
        if label_score(" ".join(t.text for t in first.tokens[:k]), STOP_LABELS) >= 0.85:
            return True
    return False


def _header(line: Line) -> dict[str, Cell] | None:
    """The columns of a header line, or None when the line is not one.

    Header cells that ran together (``Prix unitaire Montant``) are split into the
    longest column labels they start with, left to right.
    """
    found: dict[str, Cell] = {}
    unmatched: list[Cell] = []
    for cell in line.cells:
        i = 0
        while i < len(cell.tokens):
            best: tuple[float, int, str] = (0.0, 0, "")
            for k in range(1, min(4, len(cell.tokens) - i) + 1):
                text = " ".join(t.text for t in cell.tokens[i : i + k])
                for column in ITEM_COLUMNS:
                    s = label_score(text, CONCEPTS[column].labels)
                    if s >= 0.85 and (k, s) > (best[1], best[0]):
                        best = (s, k, column)
            if not best[1]:
                unmatched.append(cell.sub(i, i + 1))
                i += 1
                continue
            if best[2] not in found:
                found[best[2]] = cell.sub(i, i + best[1])
            i += best[1]
    # A misread last header ("Importo" read as "taped") right of every known column
    # is still the amount column: leaving it out would pour the amounts into the
    # unit price column.
    if (
        len(unmatched) == 1
        and len(found) >= 2
        and "amount" not in found
        and unmatched[0].x0 > max(c.x1 for c in found.values())
    ):
        found["amount"] = unmatched[0]
        unmatched = []
    if len(found) >= 2 and ("amount" in found or "unit_price" in found) and len(unmatched) <= 1:
        return found
    return None


def extract_rows(layouts: list[PageLayout], decimal: str) -> list[ItemRow]:
    """The document's line items, from every page's item table (or receipt lines)."""
    rows: list[ItemRow] = []
    for layout in layouts:
        for i, line in enumerate(layout.lines):
            header = _header(line)
            if header is not None:
                rows.extend(_table_rows(layout, i, header, decimal))
                break
    if rows:
        return rows
    for layout in layouts:
        rows.extend(_receipt_rows(layout, decimal))
    return rows


def _table_rows(
    layout: PageLayout, start: int, header: dict[str, Cell], decimal: str
) -> list[ItemRow]:
    columns = sorted(header.items(), key=lambda kv: kv[1].x0)
    rows: list[ItemRow] = []
    last_y = layout.lines[start].y1
    height = layout.lines[start].height
    for line in layout.lines[start + 1 :]:
        if is_stop(line) or line.y0 - last_y > 3.5 * height:
            break
        assigned = _assign(line, columns)
        numbers = {
            k: parse_amount(" ".join(t.text for t in v), decimal)
            for k, v in assigned.items()
            if k != "description"
        }
        has_amount = any(v is not None for v in numbers.values())
        text = " ".join(t.text for t in assigned.get("description", []))
        if has_amount:
            cells = {"description": ItemCell(text or None, assigned.get("description", []))}
            for key, value in numbers.items():
                cells[key] = ItemCell(value, assigned[key])
            rows.append(ItemRow(cells, layout.number, 0.9))
        elif text and rows and not any(k != "description" for k in assigned):
            prev = rows[-1].cells["description"]
            prev.tokens = prev.tokens + assigned["description"]
            prev.value = f"{prev.value or ''} {text}".strip()
        elif rows:
            break  # something else below the table
        last_y = line.y1
    return rows


def _assign(line: Line, columns: list[tuple[str, Cell]]) -> dict[str, list[Token]]:
    """Tokens of a line by column: the column whose header they overlap most."""
    out: dict[str, list[Token]] = {}
    bounds = []
    for i, (name, cell) in enumerate(columns):
        left = cell.x0 if i == 0 else (columns[i - 1][1].x1 + cell.x0) / 2
        right = cell.x1 if i == len(columns) - 1 else (cell.x1 + columns[i + 1][1].x0) / 2
        bounds.append((name, left, right))
    for cell in line.cells:
        numeric = [t for t in cell.tokens if parse_amount(t.text, ".") is not None]
        if len(numeric) <= 1 or len(cell.tokens) == len(numeric) == 1:
            units: list[list[Token]] = [cell.tokens]
        else:
            units = [[t] for t in cell.tokens]
        for unit in units:
            x0, x1 = unit[0].x0, unit[-1].x1
            name = max(bounds, key=lambda b: min(x1, b[2]) - max(x0, b[1]) - _dist(x0, x1, b))[0]
            out.setdefault(name, []).extend(unit)
    return out


def _dist(x0: float, x1: float, bound: tuple[str, float, float]) -> float:
    centre = (x0 + x1) / 2
    return (
        0.0
        if bound[1] <= centre <= bound[2]
        else min(abs(centre - bound[1]), abs(centre - bound[2]))
    )


def _receipt_rows(layout: PageLayout, decimal: str) -> list[ItemRow]:
    rows: list[ItemRow] = []
    previous: Line | None = None  # a text-only line: the name of a "2 x 3.50" line below
    for line in layout.lines:
        if is_stop(line):
            if rows:
                break
            previous = None
            continue
        tokens = line.tokens
        if len(tokens) < 2 or not _MONEY.match(tokens[-1].text):
            money = any(_MONEY.match(t.text) for t in tokens)
            previous = line if any(c.isalpha() for c in line.text) and not money else None
            continue
        if _QTY_TIMES.match(line.text) and previous is not None:
            tokens = previous.tokens + tokens  # the item's name sits on the line above
        previous = None
        amount = parse_amount(tokens[-1].text, decimal)
        head = " ".join(t.text for t in tokens[:-1])
        qty: float | None = None
        unit: float | None = None
        desc_tokens = tokens[:-1]
        match = _QTY_TIMES.search(head)
        if match:
            amounts = find_amounts(head[match.end() :], decimal)
            qty = parse_amount(match.group(1), decimal)
            if amounts:
                unit = amounts[0][2]
            kept = (head[: match.start()] + " " + head[match.end() :]).strip()
            # Drop the unit price from the name, keep other numbers ("Eggs 10").
            kept = re.sub(r"(?<!\S)[-−]?[€$£]?\d[\d.,]*[.,]\d{2}\s?[€$£]?(?!\S)", " ", kept)
            kept = kept.strip()
            desc_tokens = [t for t in tokens[:-1] if t.text in kept.split()]
        description = " ".join(t.text for t in desc_tokens)
        if not any(c.isalpha() for c in description) or amount is None:
            continue
        cells = {
            "description": ItemCell(description, desc_tokens),
            "amount": ItemCell(amount, [tokens[-1]]),
        }
        if qty is not None:
            cells["quantity"] = ItemCell(qty, [])
        if unit is not None:
            cells["unit_price"] = ItemCell(unit, [])
        rows.append(ItemRow(cells, layout.number, 0.8))
    return rows
